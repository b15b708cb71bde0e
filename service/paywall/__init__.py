"""The reader-side paywall answer: short-lived signed entitlement tokens and their keys."""
