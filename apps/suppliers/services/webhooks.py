"""Webhook authentication: HMAC-SHA256 over "<timestamp>.<body>", a 5-minute window, and replay refusal."""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import timedelta

import structlog
from django.db import IntegrityError, transaction
from rest_framework import status

from apps.core.errors import DomainError
from apps.core.secrets import SecretsUnreadable
from apps.core.throttling import log_refusal_once_a_window
from apps.suppliers.models import Supplier, WebhookReceipt
from apps.suppliers.services.suppliers import supplier_secret

log = structlog.get_logger("stockroom.suppliers.webhook")

REPLAY_WINDOW = timedelta(minutes=5)


class WebhookRefused(DomainError):
    status_code = status.HTTP_401_UNAUTHORIZED
    code = "webhook_refused"
    default_detail = "The webhook signature is missing, wrong, stale or replayed."


class BadSignature(WebhookRefused):
    code = "bad_signature"


class StaleTimestamp(WebhookRefused):
    code = "stale_timestamp"


class ReplayedWebhook(WebhookRefused):
    code = "replayed"


def webhook_signature(*, secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def webhook_verify(
    *, supplier_code: str, timestamp: str | None, signature: str | None, body: bytes, remote: str = ""
) -> Supplier:
    """Return the supplier when the request is authentic, fresh and new; raise WebhookRefused otherwise.

    What does not depend on the supplier (the headers, the timestamp) is checked first, and an
    unknown supplier answers as a bad signature does, so no answer tells which suppliers exist.
    Refusals are logged once a minute per supplier (made-up codes share one line) with their
    count, never with the secret or the full signature.
    """
    supplier = Supplier.objects.select_related("location").filter(code=supplier_code, is_active=True).first()
    usable = supplier is not None and bool(supplier.secret) and supplier.connector == Supplier.Connector.WEBHOOK

    def refuse(error: WebhookRefused) -> WebhookRefused:
        endpoint = f"supplier-webhook:{supplier_code}" if usable else "supplier-webhook:unknown-supplier"
        log_refusal_once_a_window(
            log, "webhook_refused", endpoint=endpoint, supplier=supplier_code[:100], reason=error.code, remote=remote
        )
        return error

    if not timestamp or not signature:
        raise refuse(BadSignature("X-Timestamp and X-Signature headers are required."))
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise refuse(StaleTimestamp("X-Timestamp must be Unix seconds.")) from None
    if abs(time.time() - sent_at) > REPLAY_WINDOW.total_seconds():
        raise refuse(StaleTimestamp(f"X-Timestamp is more than {int(REPLAY_WINDOW.total_seconds())} s away."))
    if not usable:
        raise refuse(BadSignature())
    assert supplier is not None
    try:
        secret = supplier_secret(supplier)
    except SecretsUnreadable:  # staff hear of it (incident, /healthz); the sender learns nothing more
        raise refuse(BadSignature()) from None
    expected = webhook_signature(secret=secret, timestamp=timestamp, body=body)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        raise refuse(BadSignature())
    digest = hashlib.sha256(signature.strip().encode()).hexdigest()
    try:
        with transaction.atomic():
            WebhookReceipt.objects.create(supplier=supplier, digest=digest)
    except IntegrityError:
        raise refuse(ReplayedWebhook("This webhook was already received.")) from None
    return supplier
