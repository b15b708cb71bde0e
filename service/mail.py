"""Outgoing email: `log` prints messages (development), `smtp` sends them.

Inside a request, messages are sent after the response has gone out: the visitor never waits
on the mail server, and a page that sends mail only for existing accounts (reset, join) takes
the same time whether or not the account exists.
"""
from __future__ import annotations

import logging
import smtplib
from collections import deque
from email.message import EmailMessage
from functools import partial

from flask import Flask, Response, current_app, g, has_request_context

log = logging.getLogger("service.mail")


class MailError(Exception):
    pass


def init_app(app: Flask) -> None:
    @app.after_request
    def _send_after_response(response: Response) -> Response:
        pending = g.pop("mail_later", None)
        if pending:
            response.call_on_close(partial(_send_all, app, pending))
        return response


def _send_all(app: Flask, messages: list[EmailMessage]) -> None:
    with app.app_context():
        for msg in messages:
            try:
                _deliver(msg)
            except MailError:
                pass  # logged in _deliver; the reader can ask again


def send_mail(to: str, subject: str, body: str) -> None:
    cfg = current_app.config
    msg = EmailMessage()
    msg["From"] = cfg["MAIL_FROM"]
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content(body)
    if has_request_context():
        g.setdefault("mail_later", []).append(msg)
        return
    _deliver(msg)


def _deliver(msg: EmailMessage) -> None:
    cfg = current_app.config
    backend = cfg["MAIL_BACKEND"]
    if backend == "log":
        log.warning("MAIL (log backend) to=%s subject=%s\n%s", msg["To"], msg["Subject"], msg.get_content())
        current_app.extensions.setdefault("mail_outbox", deque(maxlen=100)).append(msg)
        return
    if backend != "smtp":
        raise MailError(f"unknown MAIL_BACKEND {backend!r}")
    try:
        with smtplib.SMTP(cfg["SMTP_HOST"], cfg["SMTP_PORT"], timeout=cfg["SMTP_TIMEOUT"]) as smtp:
            if cfg["SMTP_STARTTLS"]:
                smtp.starttls()
            if cfg["SMTP_USERNAME"]:
                smtp.login(cfg["SMTP_USERNAME"], cfg["SMTP_PASSWORD"])
            smtp.send_message(msg)
    except (OSError, smtplib.SMTPException) as exc:
        log.error("could not send mail to %s: %s", msg["To"], exc)
        raise MailError(str(exc)) from exc
