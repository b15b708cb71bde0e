"""`flask --app wsgi demo --seed N`: N demo members with 18 months of believable history, so a
newcomer's `/staff/insights` shows real-looking charts (`make run` seeds 500).

The members join over 18 months (more lately), at the demo catalogue's levels (most at $5 a
month, some yearly, some giving more, some through one of three organisations); each month a
few cancel, a few payments fail and most of those recover within days, the rest lapse. Every
change is a `membership_history` row (source `import`: it did not come from Stripe), and each
member's row ends in the state its last change says. Demo members have no Stripe objects.

Refused when PUBLIC_BASE_URL is https (production). Running it again adds nothing while N demo
members exist.
"""
from __future__ import annotations

import math
import random
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from ..accounts.services import hash_password
from ..db import utcnow
from ..domain.membership import CUSTOM_LEVEL_NAME, MembershipStatus as S, Role
from ..domain.newsletter import Desired
from ..membership.history import IMPORT
from ..models import Account, Membership, MembershipHistory, Organisation, Seat

DOMAIN = "demo.dawns.example"  # every demo member's address ends with it
FIRST = ("Amina", "Kofi", "Leila", "Mateo", "Sofia", "Tariq", "Hana", "Jonas", "Priya", "Omar", "Grace", "Yusuf",
         "Elena", "Ibrahim", "Chloé", "Nadia", "Samuel", "Aisha", "Lucas", "Mariam", "Daniel", "Fatou", "Rahel", "Tomás")
LAST = ("Yusuf", "Mensah", "Haddad", "García", "Rossi", "Karimi", "Tanaka", "Berg", "Sharma", "Nasser", "Okafor",
        "Demir", "Petrov", "Diallo", "Dubois", "Khalil", "Osei", "Bello", "Silva", "Farah", "Levy", "Ndiaye")
ORGANISATIONS = (("Sahel Relief Network", 40), ("Coastal University", 25), ("Ministry of Cooperation", 15))
LEVELS = (  # name, monthly value (cents), currency, weight
    ("Member", 500, 60), ("Member, yearly", round(5000 / 12), 22), (CUSTOM_LEVEL_NAME, 1500, 8),
)
MONTH = timedelta(days=30.44)


class SeedRefused(Exception):
    pass


@dataclass
class Seeded:
    members: int
    history_rows: int


def seed(session: Session, count: int, *, public_base_url: str, now: datetime | None = None,
         rng: random.Random | None = None) -> Seeded:
    if public_base_url.startswith("https://"):
        raise SeedRefused("demo data is refused in production (PUBLIC_BASE_URL is https)")
    if count < 1 or count > 100_000:
        raise SeedRefused("seed between 1 and 100,000 demo members")
    now = now or utcnow()
    rng = rng or random.Random(20261127)
    have = session.scalar(select(func.count(Account.id)).where(Account.email.like(f"%@{DOMAIN}"))) or 0
    if have >= count:
        return Seeded(0, 0)
    orgs = _organisations(session, now)
    password = hash_password(secrets.token_urlsafe(32))  # nobody signs in as a demo member
    made = rows = 0
    for i in range(have, count):
        account, history = _member(i, rng, now, orgs, password)
        session.add(account)
        session.flush()
        session.execute(insert(MembershipHistory), [{**h, "account_id": account.id} for h in history])
        if account.membership.organisation_id is not None or any(h["organisation_id"] for h in history):
            org_id = next(h["organisation_id"] for h in history if h["organisation_id"])
            session.add(Seat(organisation_id=org_id, account_id=account.id, how="staff",
                             status="active" if account.membership.organisation_id else "removed",
                             taken_at=history[0]["at"]))
        made += 1
        rows += len(history)
    session.commit()
    return Seeded(made, rows)


def _organisations(session: Session, now: datetime) -> list[int]:
    ids = []
    for name, seats in ORGANISATIONS:
        slug = "demo-" + "-".join(name.lower().split())
        org = session.scalars(select(Organisation).where(Organisation.slug == slug)).first()
        if org is None:
            org = Organisation(name=name, slug=slug, seats=seats, domains=[], billing="invoice",
                               status=S.ACTIVE, created_at=now - 17 * MONTH)
            session.add(org)
            session.flush()
        ids.append(org.id)
    return ids


def _member(i: int, rng: random.Random, now: datetime, orgs: list[int], password: str):
    first, last = rng.choice(FIRST), rng.choice(LAST)
    # Joins spread over 18 months, steadily more of them each month (the membership grows): the
    # density of an age falls linearly from now to 18 months back.
    joined = now - 18 * MONTH * (1 - math.sqrt(1 - rng.random()))
    via_org = rng.random() < 0.08
    name, value, _ = rng.choices(LEVELS, weights=[w for _, _, w in LEVELS])[0]
    if name == CUSTOM_LEVEL_NAME:
        value = rng.choice((1000, 1500, 2000, 2500))
    org_id = rng.choice(orgs) if via_org else None
    dawns = rng.random() < 0.8
    history: list[dict] = []
    state, at = S.PENDING, joined

    def move(to: S, when: datetime) -> None:
        nonlocal state
        entitled = to in (S.ACTIVE, S.PAST_DUE, S.ORGANISATION, S.COMPED)
        paying = to in (S.ACTIVE, S.PAST_DUE)
        history.append({"at": when, "from_status": state.value, "to_status": to.value, "entitled": entitled,
                        # A seat carries no level of its own (as derive() has it).
                        "level_name": None if org_id or not (entitled or to == S.PAST_DUE) else name,
                        "monthly_value": value if paying else 0,
                        "currency": "usd", "organisation_id": org_id if to == S.ORGANISATION else None,
                        "newsletter": dawns and entitled, "source": IMPORT, "stripe_event_id": None})
        state = to

    move(S.ORGANISATION if org_id else S.ACTIVE, joined + timedelta(minutes=rng.randint(2, 30)))
    at = joined + MONTH
    while at < now and state in (S.ACTIVE, S.ORGANISATION):
        roll = rng.random()
        if roll < 0.025:  # cancels
            move(S.CANCELED, at + timedelta(days=rng.uniform(0, 20)))
        elif roll < 0.065 and state == S.ACTIVE:  # a failed payment
            failed = at + timedelta(days=rng.uniform(0, 3))
            if failed >= now:
                break
            move(S.PAST_DUE, failed)
            if rng.random() < 0.72:
                back = failed + timedelta(days=rng.choice((1, 2, 3, 4, 5, 7, 9, 12)), hours=rng.randint(0, 20))
                if back < now:
                    move(S.ACTIVE, back)
            else:
                ended = failed + timedelta(days=21)
                if ended < now:
                    move(S.LAPSED, ended)
        at += MONTH
    last_row = history[-1]
    entitled_now = last_row["entitled"]
    email = f"{first}.{last}.{i}@{DOMAIN}".lower().replace("é", "e").replace("á", "a").replace("í", "i")
    account = Account(email=email, name=f"{first} {last}", password_hash=password, role=Role.MEMBER,
                      created_at=joined, language=rng.choice(("en", "en", "en", "fr", "ar")))
    account.membership = Membership(
        status=state, created_at=joined, status_changed_at=last_row["at"],
        # A seat's access is open-ended while its organisation pays; a paid one runs to its renewal.
        paid_through=(now + timedelta(days=rng.randint(1, 29))) if state in (S.ACTIVE, S.PAST_DUE)
        else None if state == S.ORGANISATION else last_row["at"],
        level_name=last_row["level_name"],
        level_amount=(5000 if name == "Member, yearly" else value) if state in (S.ACTIVE, S.PAST_DUE) else None,
        level_currency="usd" if last_row["level_name"] else None,
        level_interval=("year" if name == "Member, yearly" else "month") if last_row["level_name"] else None,
        monthly_value=last_row["monthly_value"], organisation_id=last_row["organisation_id"],
        has_seat=org_id is not None, newsletter_opt_in=dawns,
        newsletter_desired=Desired.SUBSCRIBED.value if dawns and entitled_now else Desired.NONE.value,
        newsletter_status="subscribed" if dawns and entitled_now else "not_subscribed")
    return account, history
