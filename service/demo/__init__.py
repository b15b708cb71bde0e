"""The embedded default (`make run`): localstripe as a separate process, the gateway's twin for
it, and the labelled demo pages that stand in for Stripe Checkout and the Customer Portal."""
