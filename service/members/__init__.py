"""Reader accounts: join, login, logout, password reset, the account page."""
