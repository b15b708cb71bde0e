"""Outgoing email: `log` prints messages (development), `smtp` sends them."""
from __future__ import annotations

import logging
import smtplib
from collections import deque
from email.message import EmailMessage

from flask import current_app

log = logging.getLogger("service.mail")


class MailError(Exception):
    pass


def send_mail(to: str, subject: str, body: str) -> None:
    cfg = current_app.config
    msg = EmailMessage()
    msg["From"] = cfg["MAIL_FROM"]
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content(body)
    backend = cfg["MAIL_BACKEND"]
    if backend == "log":
        log.warning("MAIL (log backend) to=%s subject=%s\n%s", to, subject, body)
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
        log.error("could not send mail to %s: %s", to, exc)
        raise MailError(str(exc)) from exc
