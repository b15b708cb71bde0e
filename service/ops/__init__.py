"""Health and readiness probes."""
