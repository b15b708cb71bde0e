"""The JSON API under /api/v1 (token auth, marshmallow schemas, OpenAPI document)."""
