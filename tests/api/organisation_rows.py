"""Organisations for the API, paywall and export tests: an organisation that entitles without
Stripe (a staff comp, derived by `recompute_organisation`), and seats given by `take_seat`,
so every reader's state is the membership service's own."""
from __future__ import annotations

from service.db import get_session, utcnow
from service.models import Account, Organisation


def make_organisation(app, *, name: str = "UNICEF", seats: list[int] = (), total: int = 10,
                      domains: list[str] | None = None, billing: str = "checkout", comped: bool = True) -> int:
    """An organisation of `total` seats, comped (so it entitles) unless told otherwise, with a
    seat for each account id in `seats`, oldest first."""
    from service.membership.organisations import recompute_organisation, take_seat, unique_slug

    with app.app_context():
        s = get_session()
        org = Organisation(name=name, slug=unique_slug(s, name), seats=total, domains=domains or [],
                           billing=billing, comped_at=utcnow() if comped else None,
                           comp_reason="test" if comped else None)
        s.add(org)
        s.flush()
        recompute_organisation(s, org)
        for account_id in seats:
            take_seat(s, org, s.get(Account, account_id), "staff")
        s.commit()
        return org.id


def end_comp(app, org_id: int) -> None:
    """The organisation stops entitling: its comp is withdrawn and it is recomputed."""
    from service.membership.organisations import recompute_organisation

    with app.app_context():
        s = get_session()
        org = s.get(Organisation, org_id)
        org.comped_at = org.comped_until = None
        recompute_organisation(s, org)
        s.commit()
