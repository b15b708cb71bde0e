"""DAWNS enrollment follows membership through the outbox, and never loses a change."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from service.db import get_session
from service.models import Account, NewsletterOutbox

from ..support.events import event, post_event, run_worker
from ..support.factories import PASSWORD, link_customer, make_account
from ..support.mailchimp_standin import md5
from ..support.stripe_objects import subscription
from ..support.web import login, post_form

NOW = int(time.time())


def outbox(app, account_id=None):
    with app.app_context():
        stmt = select(NewsletterOutbox).order_by(NewsletterOutbox.id)
        if account_id is not None:
            stmt = stmt.where(NewsletterOutbox.account_id == account_id)
        rows = get_session().scalars(stmt).all()
        get_session().expunge_all()
        return [(r.action, r.status) for r in rows]


def reader(app, **kw) -> int:
    """A reader whose Stripe customer cus_<id> is linked (as by a completed checkout of ours)."""
    m = make_account(app, **kw)
    link_customer(app, m, f"cus_{m}")
    return m


def membership(app, account_id):
    with app.app_context():
        m = get_session().get(Account, account_id).membership
        get_session().expunge_all()
        return m


def sub_event(member, status, created, kind="updated", **kw):
    return event(f"customer.subscription.{kind}",
                 subscription(id=f"sub_{member}", customer=f"cus_{member}", status=status, member_id=member, **kw),
                 created=created)


def test_becoming_entitled_enqueues_exactly_one_enrollment_and_duplicates_nothing_more(make_app):
    app = make_app()
    client = app.test_client()
    m = reader(app)
    created = sub_event(m, "active", NOW - 50, "created")
    post_event(client, created)
    post_event(client, created)  # duplicate delivery
    post_event(client, sub_event(m, "active", NOW - 40))  # a renewal: still entitled
    post_event(client, sub_event(m, "past_due", NOW - 30))  # grace: still entitled
    assert outbox(app, m) == [("subscribed", "pending")]
    assert membership(app, m).newsletter_desired == "subscribed"


def test_lapsing_enqueues_the_removal_per_policy(make_app):
    for policy, action in (("unsubscribe", "unsubscribed"), ("archive", "archived"), ("keep", "kept")):
        app = make_app(NEWSLETTER_ON_LAPSE=policy)
        client = app.test_client()
        m = reader(app, email=f"{policy}@example.org")
        post_event(client, sub_event(m, "active", NOW - 50, "created"))
        post_event(client, sub_event(m, "canceled", NOW - 40, "deleted"))
        assert outbox(app, m)[-1] == (action, "pending"), policy
        # The earlier enrollment was never delivered: the newer state supersedes it.
        assert outbox(app, m)[0] == ("subscribed", "superseded")


def test_an_unticked_box_enqueues_nothing(make_app):
    app = make_app()
    client = app.test_client()
    m = reader(app, newsletter=False)
    post_event(client, sub_event(m, "active", NOW - 50, "created"))
    post_event(client, sub_event(m, "canceled", NOW - 40, "deleted"))
    assert outbox(app, m) == []


def test_the_worker_not_the_web_process_delivers_the_enrollment(app, client):
    m = reader(app)
    resp = post_event(client, sub_event(m, "active", NOW, "created"))
    resp.close()
    assert outbox(app, m) == [("subscribed", "pending")]  # a web process never calls the provider
    run_worker(app)
    assert outbox(app, m) == [("subscribed", "delivered")]
    record = app.extensions["newsletter_provider"].records[-1]
    assert record["action"] == "subscribed" and record["email"] == "reader@example.org"
    assert record["member_tag"] == "active"
    ms = membership(app, m)
    assert ms.newsletter_status == "subscribed" and ms.newsletter_synced_at is not None
    with open(app.config["NEWSLETTER_LOG_PATH"]) as fh:
        assert '"action": "subscribed"' in fh.read()


def test_provider_down_for_several_attempts_then_back_delivers_everything_once_in_order(mc_app, mailchimp):
    client = mc_app.test_client()
    runner = mc_app.test_cli_runner()
    a = reader(mc_app, email="a@example.org", name="Ada Lovelace")
    b = reader(mc_app, email="b@example.org", name="Bo Diddley")
    mailchimp.fail_next(20, 503)  # Mailchimp is down
    for m in (a, b):
        resp = post_event(client, sub_event(m, "active", NOW - 50, "created"))
        resp.close()
        assert resp.status_code == 200  # the webhook does not care that Mailchimp is down
    for _ in range(3):
        runner.invoke(args=["newsletter", "sync"])
    assert [s for _, s in outbox(mc_app)] == ["pending", "pending"]
    assert mailchimp.members == {}
    mailchimp.failures.clear()  # Mailchimp is back
    post_event(client, sub_event(a, "canceled", NOW - 40, "deleted")).close()
    result = runner.invoke(args=["newsletter", "sync"])
    assert result.exit_code == 0, result.output
    assert outbox(mc_app, a)[-1] == ("unsubscribed", "delivered")
    assert outbox(mc_app, b) == [("subscribed", "delivered")]
    ok_puts = [(c.path.rsplit("/", 1)[1], c.body.get("status")) for c in mailchimp.calls
               if c.method == "PUT" and c.status == 200]
    # b enrolled once; a's never-delivered enrollment was superseded by its removal.
    assert ok_puts.count((md5("b@example.org"), "subscribed")) == 1
    assert mailchimp.members[md5("b@example.org")].status == "subscribed"
    assert md5("a@example.org") not in mailchimp.members  # never enrolled, nothing to remove


def test_changes_for_one_member_are_delivered_in_order(mc_app, mailchimp):
    client = mc_app.test_client()
    runner = mc_app.test_cli_runner()
    m = reader(mc_app)
    post_event(client, sub_event(m, "active", NOW - 50, "created")).close()
    run_worker(mc_app)
    assert outbox(mc_app, m) == [("subscribed", "delivered")]
    mailchimp.fail_next(3, 500)
    post_event(client, sub_event(m, "canceled", NOW - 40, "deleted")).close()
    post_event(client, sub_event(m, "active", NOW - 30, "updated")).close()  # rejoined
    for _ in range(4):  # each pass makes one attempt per due change: three failures, then through
        runner.invoke(args=["newsletter", "sync"])
    member = mailchimp.members[md5("reader@example.org")]
    assert member.status == "subscribed" and member.tags == {"member": "active"}
    assert membership(mc_app, m).newsletter_status == "subscribed"
    statuses = [s for _, s in outbox(mc_app, m)]
    assert statuses.count("pending") == 0 and statuses.count("in_flight") == 0


def test_after_max_attempts_the_change_is_marked_failed_for_staff_and_can_be_retried(make_app, mailchimp):
    app = make_app(NEWSLETTER_PROVIDER="mailchimp", MAILCHIMP_API_KEY=mailchimp.api_key, MAILCHIMP_SERVER_PREFIX="us1",
                   MAILCHIMP_LIST_ID=mailchimp.list_id, MAILCHIMP_API_BASE=mailchimp.base, NEWSLETTER_BACKOFF_BASE=0.0,
                   NEWSLETTER_MAX_ATTEMPTS=3)
    m = reader(app)
    post_event(app.test_client(), sub_event(m, "active", NOW, "created"))
    mailchimp.fail_next(10, 500)
    for _ in range(4):  # one attempt per pass; the third failure is the last
        app.test_cli_runner().invoke(args=["newsletter", "sync"])
    assert outbox(app, m) == [("subscribed", "failed")]
    with app.app_context():
        row = get_session().scalars(select(NewsletterOutbox)).one()
        assert row.attempts == 3 and "500" in row.last_error
        from service.newsletter.outbox import retry_failed
        assert retry_failed(get_session(), row.id) is True
        get_session().commit()
    mailchimp.failures.clear()
    app.test_cli_runner().invoke(args=["newsletter", "sync"])
    assert outbox(app, m) == [("subscribed", "delivered")]


def test_mailchimp_unsubscribe_webhook_then_renewal_stays_unsubscribed(mc_app, mailchimp):
    client = mc_app.test_client()
    m = reader(mc_app)
    post_event(client, sub_event(m, "active", NOW - 50, "created")).close()
    run_worker(mc_app)
    mailchimp.unsubscribe_themselves("reader@example.org")
    resp = client.post("/newsletter/mailchimp/webhook/mc-hook-secret", data={
        "type": "unsubscribe", "fired_at": "2026-11-27 10:00:00", "data[action]": "unsub",
        "data[reason]": "manual", "data[email]": "Reader@Example.org", "data[list_id]": mailchimp.list_id})
    assert resp.status_code == 200 and resp.json["outcome"] == "applied"
    # Renewals, a lapse and a rejoin: none of them re-subscribes the reader.
    post_event(client, sub_event(m, "active", NOW - 40, "updated", period_end=NOW + 60 * 86400)).close()
    post_event(client, sub_event(m, "canceled", NOW - 30, "deleted")).close()
    post_event(client, sub_event(m, "active", NOW - 20, "updated")).close()
    mc_app.test_cli_runner().invoke(args=["newsletter", "sync"])
    assert mailchimp.members[md5("reader@example.org")].status == "unsubscribed"
    assert [c for c in mailchimp.calls if c.body and c.body.get("status") == "subscribed"][-1] is mailchimp.calls[0]
    ms = membership(mc_app, m)
    assert ms.newsletter_opt_in is False and ms.newsletter_status == "unsubscribed"


@pytest.mark.parametrize("kind, data, status, opt_in", [
    ("cleaned", {"data[email]": "reader@example.org", "data[reason]": "hard"}, "cleaned", False),
    ("upemail", {"data[old_email]": "reader@example.org", "data[new_email]": "Reader.New@example.org"}, "subscribed", True),
    ("profile", {"data[email]": "reader@example.org", "data[merges][FNAME]": "Rea"}, "subscribed", True),
])
def test_mailchimp_webhooks_update_the_dawns_status(mc_app, kind, data, status, opt_in):
    client = mc_app.test_client()
    m = reader(mc_app)
    post_event(client, sub_event(m, "active", NOW, "created")).close()
    run_worker(mc_app)
    resp = client.post("/newsletter/mailchimp/webhook/mc-hook-secret", data={"type": kind, **data})
    assert resp.status_code == 200 and resp.json["outcome"] == "applied"
    ms = membership(mc_app, m)
    assert ms.newsletter_status == status and ms.newsletter_opt_in is opt_in
    if kind == "upemail":
        assert ms.newsletter_email == "reader.new@example.org"
    from service.models import AuditLog
    with mc_app.app_context():
        assert get_session().scalars(select(AuditLog).where(AuditLog.action == f"newsletter_{kind}")).one()


def test_mailchimp_webhook_validation_get_and_secret(mc_app):
    client = mc_app.test_client()
    assert client.get("/newsletter/mailchimp/webhook/mc-hook-secret").status_code == 200
    assert client.get("/newsletter/mailchimp/webhook/wrong").status_code == 404
    assert client.post("/newsletter/mailchimp/webhook/wrong", data={"type": "unsubscribe"}).status_code == 404


def test_account_toggle_turns_dawns_off_and_on(app, client):
    m = reader(app)
    post_event(client, sub_event(m, "active", NOW, "created")).close()
    login(client, "reader@example.org", PASSWORD)
    page = client.get("/account").get_data(as_text=True)
    assert "On: members receive it free" in page and "Stop DAWNS Digest" in page
    post_form(client, "/account/newsletter", {"subscribe": "0"}, form_path="/account").close()
    assert membership(app, m).newsletter_opt_in is False
    assert "your change is on its way" in client.get("/account").get_data(as_text=True)
    run_worker(app)
    assert outbox(app, m)[-1] == ("unsubscribed", "delivered")
    post_form(client, "/account/newsletter", {"subscribe": "1"}, form_path="/account").close()
    run_worker(app)
    assert outbox(app, m)[-1] == ("subscribed", "delivered")
    assert "Newsletter list: subscribed" in client.get("/account").get_data(as_text=True)
