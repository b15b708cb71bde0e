"""The Mailchimp adapter against a real local HTTP server answering as Mailchimp documents."""
from __future__ import annotations

import base64
import hashlib

import pytest

from service.domain.newsletter import Desired
from service.newsletter.provider import Change, MailchimpProvider, ProviderError, subscriber_hash


@pytest.fixture
def provider(mailchimp):
    return MailchimpProvider(api_key=mailchimp.api_key, server_prefix="us1", list_id=mailchimp.list_id,
                             api_base=mailchimp.base, timeout=0.5)


def change(desired=Desired.SUBSCRIBED, email="Amina.Yusuf@Example.org", known=None, name="Amina Yusuf", confirm=False):
    return Change(desired, email, known, name, confirm)


def test_subscriber_hash_is_md5_of_the_lowercased_email():
    assert subscriber_hash(" Amina.Yusuf@Example.org ") == hashlib.md5(b"amina.yusuf@example.org").hexdigest()


def test_enroll_is_an_upsert_by_hash_with_status_if_new_merge_fields_and_member_tag(provider, mailchimp):
    result = provider.apply(change())
    put, tags = mailchimp.calls
    h = hashlib.md5(b"amina.yusuf@example.org").hexdigest()
    assert (put.method, put.path) == ("PUT", f"/3.0/lists/dawns123/members/{h}")
    assert put.body == {"email_address": "Amina.Yusuf@Example.org", "status_if_new": "subscribed",
                        "status": "subscribed", "merge_fields": {"FNAME": "Amina", "LNAME": "Yusuf"}}
    assert put.auth == "Basic " + base64.b64encode(b"dawns:key-us1").decode()
    assert (tags.method, tags.path, tags.body) == (
        "POST", f"/3.0/lists/dawns123/members/{h}/tags", {"tags": [{"name": "member", "status": "active"}]})
    assert result.status == "subscribed"
    assert mailchimp.members[h].tags == {"member": "active"}


def test_reader_who_unsubscribed_is_never_forced_back(provider, mailchimp):
    provider.apply(change())
    mailchimp.unsubscribe_themselves("amina.yusuf@example.org")
    result = provider.apply(change())
    assert result.opted_out is True and result.status == "unsubscribed"
    assert mailchimp.calls[-1].status == 400  # "Member In Compliance State"
    assert mailchimp.members[subscriber_hash("amina.yusuf@example.org")].status == "unsubscribed"


def test_explicit_new_consent_after_unsubscribing_asks_for_confirmation(provider, mailchimp):
    provider.apply(change())
    mailchimp.unsubscribe_themselves("amina.yusuf@example.org")
    result = provider.apply(change(confirm=True))
    assert result.status == "pending" and not result.opted_out
    assert mailchimp.calls[-2].body["status"] == "pending"


def test_removal_unsubscribes_and_marks_the_tag_inactive(provider, mailchimp):
    provider.apply(change())
    provider.apply(change(Desired.UNSUBSCRIBED, known="amina.yusuf@example.org"))
    m = mailchimp.members[subscriber_hash("amina.yusuf@example.org")]
    assert m.status == "unsubscribed" and m.tags == {"member": "inactive"}


def test_keep_leaves_the_status_and_marks_the_tag_inactive(provider, mailchimp):
    provider.apply(change())
    provider.apply(change(Desired.KEPT, known="amina.yusuf@example.org"))
    put = [c for c in mailchimp.calls if c.method == "PUT"][-1]
    assert "status" not in put.body
    m = mailchimp.members[subscriber_hash("amina.yusuf@example.org")]
    assert m.status == "subscribed" and m.tags == {"member": "inactive"}


def test_archive_deletes_and_archive_of_unknown_member_is_404_and_fine(provider, mailchimp):
    provider.apply(change())
    assert provider.apply(change(Desired.ARCHIVED, known="amina.yusuf@example.org")).status == "archived"
    assert mailchimp.calls[-1].method == "DELETE" and mailchimp.calls[-1].status == 204
    again = provider.apply(change(Desired.ARCHIVED, email="nobody@example.org"))
    assert again.status == "archived" and mailchimp.calls[-1].status == 404


def test_email_change_moves_the_list_member(provider, mailchimp):
    provider.apply(change())
    provider.apply(change(email="new@example.org", known="amina.yusuf@example.org"))
    patch = [c for c in mailchimp.calls if c.method == "PATCH"][0]
    assert patch.path.endswith(subscriber_hash("amina.yusuf@example.org"))
    assert patch.body == {"email_address": "new@example.org"}
    assert list(mailchimp.members) == [subscriber_hash("new@example.org")]


@pytest.mark.parametrize("status", [429, 500, 503])
def test_rate_limit_and_server_errors_are_retryable(provider, mailchimp, status):
    mailchimp.fail_next(1, status)
    with pytest.raises(ProviderError) as err:
        provider.apply(change())
    assert err.value.retryable is True
    if status == 429:
        assert err.value.retry_after == 0.0


def test_timeout_is_retryable(provider, mailchimp):
    mailchimp.fail_next(1, 200, delay=2.0)
    with pytest.raises(ProviderError) as err:
        provider.apply(change())
    assert err.value.retryable is True and "timed out" in str(err.value)


def test_bad_api_key_is_not_retryable(mailchimp):
    bad = MailchimpProvider(api_key="wrong-us1", server_prefix="us1", list_id=mailchimp.list_id,
                            api_base=mailchimp.base)
    with pytest.raises(ProviderError) as err:
        bad.apply(change())
    assert err.value.retryable is False and "401" in str(err.value)
