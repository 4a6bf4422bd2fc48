"""HTTP only: the app factory, routes, request and response schemas, content negotiation, and
the one place where errors become responses."""
