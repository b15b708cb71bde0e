"""The staff console (journey 6)."""
