"""The operations on numpy arrays, with no HTTP: sample, encode, reconstruct, interpolate,
traverse, score and complete, each taking one frozen spec and returning one ``Result``."""
