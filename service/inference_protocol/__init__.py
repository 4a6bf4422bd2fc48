"""The Open Inference Protocol (KServe v2) over the registry, without HTTP: which v2 models
exist and their metadata (``models``), request and response tensors, JSON or binary
(``tensors``), and the protocol's JSON objects (``schema``)."""
