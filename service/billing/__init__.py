"""Billing: the Stripe gateway, the membership lifecycle it drives, and its pages."""
