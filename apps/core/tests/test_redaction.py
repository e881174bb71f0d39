"""What a log reader sees when code slips: a credential in an exception, in a URL, or under a telling key.

The lines are read as the configured formatter writes them (what lands in the web and worker logs).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import structlog

from apps.core.redaction import redact, secrets_remember


@contextmanager
def log_output() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    formatter = next(h.formatter for h in root.handlers if isinstance(h.formatter, structlog.stdlib.ProcessorFormatter))
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root.addHandler(handler)
    try:
        yield stream
    finally:
        root.removeHandler(handler)


def test_an_exception_report_does_not_carry_a_credential_or_a_query_string():
    secrets_remember(["cs_RememberedConsumerSecret"])
    with log_output() as out:
        try:
            raise RuntimeError(
                "GET https://shop.example.com/wp-json/wc/v3/orders?consumer_secret=cs_RememberedConsumerSecret "
                "failed while holding cs_RememberedConsumerSecret"
            )
        except RuntimeError:
            structlog.get_logger("stockroom.test").exception("order_poll_crashed", channel="woo")
        logging.getLogger("urllib3.connectionpool").warning(
            'https://shop.example.com:443 "GET /wp-json/wc/v3/products?consumer_key=ck_1&consumer_secret=cs_2 HTTP/1.1"'
        )
    text = out.getvalue()
    assert "order_poll_crashed" in text and "RuntimeError" in text  # the report is still there
    assert "cs_RememberedConsumerSecret" not in text and "consumer_secret=cs_2" not in text
    assert "shop.example.com" in text  # still says where


def test_a_value_logged_under_a_secret_name_is_redacted():
    with log_output() as out:
        structlog.get_logger("stockroom.test").warning(
            "settings_seen", access_token="shpat_UnrememberedValue1", settings={"client_secret": "UnrememberedValue2"}
        )
    text = out.getvalue()
    assert "settings_seen" in text
    assert "UnrememberedValue1" not in text and "UnrememberedValue2" not in text


def test_redact_replaces_given_values_and_their_url_encodings_only():
    text = "refresh_token Atzr%7Cabc123 sent to https://api.example.com/auth with Atzr|abc123; order #1001 ok"
    shown = redact(text, ["Atzr|abc123"])
    assert "abc123" not in shown and "order #1001 ok" in shown and "https://api.example.com/auth" in shown
