"""DAWNS Digest: the provider interface, its adapters, the outbox and its worker."""
