"""Which models serve: the families table, loading a store's models, the registry of name to
loaded model, and changing them while the service runs."""
