"""Scripts that prepare real image sets from the package registries as folders that
``python -m training train FAMILY --data PATH`` reads (docs/training.md, "Your own images")."""
