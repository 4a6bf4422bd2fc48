"""The model store's format, the contract between training (which writes it) and the service
(which reads it): the card schema, the Triton layout, checksums, discovery, Triton's
``config.pbtxt`` and the migration from the old layout (docs/model-store.md). No torch, no
HTTP."""
