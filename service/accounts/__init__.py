"""Accounts below the journeys: single-use emailed links and email changes."""
