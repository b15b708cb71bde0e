"""The reference for webhook acceptance (the "C" of the scale issue): the least a webhook can do.

`stripe.Webhook.construct_event` (signature and parsing), one INSERT, one commit: served by
gunicorn exactly like the service, against the same PostgreSQL database."""
from __future__ import annotations

import os

import stripe
from flask import Flask, request
from sqlalchemy import create_engine, text

app = Flask(__name__)
engine = create_engine(os.environ["DATABASE_URL"], pool_size=4)
SECRET = os.environ["STRIPE_WEBHOOK_SECRET"]
INSERT = text("INSERT INTO bench_reference_events (stripe_id, payload) VALUES (:id, :payload)")


@app.post("/stripe/webhook")
def webhook():
    payload = request.get_data()
    event = stripe.Webhook.construct_event(payload, request.headers["Stripe-Signature"], SECRET)
    with engine.begin() as conn:
        conn.execute(INSERT, {"id": event["id"], "payload": payload.decode()})
    return {"received": True}
