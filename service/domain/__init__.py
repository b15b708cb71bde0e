"""Pure domain rules: no Flask, no Stripe, no database session."""
