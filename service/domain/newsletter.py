"""DAWNS Digest enrollment rules: what the newsletter provider should hold for a member.

Pure functions: no Flask, no HTTP, no database. The desired state moves only when entitlement
or the member's own choice moves, so renewals and duplicate webhooks enqueue nothing, and a
member who unsubscribed is never re-subscribed by a renewal.
"""
from __future__ import annotations

from enum import StrEnum

from .membership import N_


class Desired(StrEnum):
    NONE = "none"                  # never enrolled, nothing to tell the provider
    SUBSCRIBED = "subscribed"      # on the list, `member` tag active
    UNSUBSCRIBED = "unsubscribed"  # unsubscribed (membership ended, or the member's choice)
    ARCHIVED = "archived"          # removed from the audience (NEWSLETTER_ON_LAPSE=archive)
    KEPT = "kept"                  # stays subscribed, `member` tag inactive (NEWSLETTER_ON_LAPSE=keep)


class OutboxStatus(StrEnum):
    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    DELIVERED = "delivered"
    FAILED = "failed"
    SUPERSEDED = "superseded"


class OnLapse(StrEnum):
    UNSUBSCRIBE = "unsubscribe"
    ARCHIVE = "archive"
    KEEP = "keep"


LAPSE_TO_DESIRED = {
    OnLapse.UNSUBSCRIBE: Desired.UNSUBSCRIBED,
    OnLapse.ARCHIVE: Desired.ARCHIVED,
    OnLapse.KEEP: Desired.KEPT,
}


def next_desired(current: Desired | str | None, *, entitled: bool, opted_in: bool, on_lapse: OnLapse | str) -> Desired:
    current = Desired(current) if current else Desired.NONE
    if entitled and opted_in:
        return Desired.SUBSCRIBED
    if current == Desired.NONE:
        return Desired.NONE  # never enrolled: an unticked box or a lapse sends nothing
    if entitled:
        # Entitled but the member said no: take them off (unless already off).
        return current if current in (Desired.UNSUBSCRIBED, Desired.ARCHIVED) else Desired.UNSUBSCRIBED
    if current == Desired.SUBSCRIBED:
        return LAPSE_TO_DESIRED[OnLapse(on_lapse)]
    if current == Desired.KEPT and not opted_in:
        return Desired.UNSUBSCRIBED
    return current


# What the provider reports holding once a desired state is delivered.
HOLDS = {
    Desired.SUBSCRIBED: {"subscribed", "pending"},
    Desired.KEPT: {"subscribed"},
    Desired.UNSUBSCRIBED: {"unsubscribed", "cleaned"},
    Desired.ARCHIVED: {"archived"},
}


def on_its_way(desired: Desired | str | None, provider_status: str) -> bool:
    """Has the member's last change not reached the provider yet?"""
    desired = Desired(desired) if desired else Desired.NONE
    return desired != Desired.NONE and provider_status not in HOLDS[desired]


def split_name(name: str) -> tuple[str, str]:
    """FNAME / LNAME merge fields from a full name."""
    parts = name.strip().split(None, 1)
    if not parts:
        return "", ""
    return parts[0], parts[1] if len(parts) > 1 else ""




# What the DAWNS list holds for a reader, in words (translated where shown).
LIST_WORDS = {"not_subscribed": N_("not subscribed"), "subscribed": N_("subscribed"),
              "unsubscribed": N_("unsubscribed"), "archived": N_("archived"), "pending": N_("pending"),
              "cleaned": N_("cleaned"), "transactional": N_("transactional")}


def list_words(status: str) -> str:
    return LIST_WORDS.get(status, status.replace("_", " "))
