"""HTTP adapters: the app factory, middleware, error mapping and health endpoints."""
