"""Logged-in clients for each role, and API tokens."""
from __future__ import annotations

from service.domain.membership import Role

from .factories import PASSWORD, make_account
from .web import login


def client_as(app, role: str):
    """A test client for: anonymous, member, staff or admin."""
    client = app.test_client()
    if role == "anonymous":
        return client
    email = f"{role}-user@example.org"
    make_account(app, email=email, name=f"{role.title()} User",
                 role={"member": Role.MEMBER, "staff": Role.STAFF, "admin": Role.ADMIN}[role])
    login(client, email, PASSWORD)
    return client


READ_ALL = ("entitlements:read", "members:read")


def api_token(app, name="website", revoked=False, scopes=READ_ALL) -> str:
    from service.accounts.api_tokens import create_token, revoke_token

    with app.app_context():
        token = create_token(name, scopes)
        if revoked:
            revoke_token(name)
    return token
