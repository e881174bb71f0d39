"""The outbound rule, from the attacker's side: a merchant (or a supplier's server) names an address, and
Stockroom must not reach an internal service through it, by any spelling, name or redirect.

Real servers on loopback; ``STOCKROOM_OUTBOUND_ALLOW`` is overridden per test (the test settings allow
loopback, as the local ones do, because the platform fakes run there).
"""

from __future__ import annotations

import socket
import time

import pytest
import requests
from rest_framework.test import APIRequestFactory

from apps.core.errors import api_exception_handler
from apps.core.outbound import OutboundRefused, outbound_session
from apps.core.tests.servers import closed_url, http_server

NOTHING_ALLOWED: list[str] = []


def test_loopback_is_refused_when_the_setting_does_not_allow_it(settings):
    settings.STOCKROOM_OUTBOUND_ALLOW = NOTHING_ALLOWED
    with http_server() as internal:
        with pytest.raises(OutboundRefused) as refused:
            outbound_session().get(f"{internal.url}/metrics", timeout=5)
        assert internal.seen == []  # not even connected to
    assert refused.value.code == "outbound_refused"
    assert refused.value.host == "127.0.0.1"
    assert "loopback" in refused.value.reason and "STOCKROOM_OUTBOUND_ALLOW" in refused.value.reason


@pytest.mark.parametrize(
    "spelling",
    [
        "http://localhost:{port}/",  # a name that resolves to loopback
        "http://127.1:{port}/",  # short form
        "http://2130706433:{port}/",  # 127.0.0.1 as one number
        "http://0x7f000001:{port}/",  # and in hex
        "http://[::ffff:127.0.0.1]:{port}/",  # IPv4-mapped IPv6
        "http://[::1]:{port}/",
        "http://0.0.0.0:{port}/",  # unspecified: Linux connects it to this machine
        "http://LocalHost:{port}/",  # any case
    ],
)
def test_no_spelling_of_this_machine_gets_through(settings, spelling):
    settings.STOCKROOM_OUTBOUND_ALLOW = NOTHING_ALLOWED
    with http_server() as internal:
        port = internal.url.rsplit(":", 1)[1]
        with pytest.raises(OutboundRefused):
            outbound_session().get(spelling.format(port=port), timeout=5)
        assert internal.seen == []


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("10.1.2.3", "private"),
        ("172.16.0.9", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),  # the cloud metadata service
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "not a public address"),  # carrier-grade NAT
        ("[fe80::1]", "link-local"),
        ("[fd00::1]", "private"),
        ("[::ffff:10.0.0.1]", "private"),
        ("[::]", "unspecified"),
    ],
)
def test_internal_addresses_are_refused_even_where_loopback_is_allowed(settings, address, why):
    settings.STOCKROOM_OUTBOUND_ALLOW = ["127.0.0.0/8", "::1"]
    started = time.monotonic()
    with pytest.raises(OutboundRefused) as refused:
        outbound_session().get(f"http://{address}/", timeout=5)
    assert why in refused.value.reason
    assert time.monotonic() - started < 2  # refused before any connection attempt, not after a timeout


def test_a_name_whose_dns_answer_is_internal_is_refused_on_that_answer(settings, monkeypatch):
    """The attacker controls the DNS answer for their own name: it is their input here, so it is scripted.
    Whatever the name, the address looked up is the one checked and the one connected to."""
    settings.STOCKROOM_OUTBOUND_ALLOW = NOTHING_ALLOWED
    real = socket.getaddrinfo
    answers = {"rebind.attacker.example": "10.9.8.7", "loop.attacker.example": "127.0.0.1"}

    def attacker_dns(host, port, *args, **kwargs):
        if host in answers:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", attacker_dns)
    with http_server() as internal:
        port = internal.url.rsplit(":", 1)[1]
        for name, address in answers.items():
            with pytest.raises(OutboundRefused) as refused:
                outbound_session().get(f"http://{name}:{port}/", timeout=5)
            assert refused.value.host == name and address in refused.value.reason
        assert internal.seen == []


def test_a_host_named_in_the_setting_is_allowed_by_name(settings):
    settings.STOCKROOM_OUTBOUND_ALLOW = ["localhost"]
    with http_server() as fake:
        port = fake.url.rsplit(":", 1)[1]
        assert outbound_session().get(f"http://localhost:{port}/", timeout=5).status_code == 200
        with pytest.raises(OutboundRefused):  # the same machine by another name is not
            outbound_session().get(f"http://127.0.0.1:{port}/", timeout=5)
    assert len(fake.seen) == 1


def test_a_redirect_from_an_allowed_server_to_a_refused_address_is_not_followed(settings):
    settings.STOCKROOM_OUTBOUND_ALLOW = ["127.0.0.1/32"]  # the outside server; 127.0.0.2 stands for inside
    with http_server(host="127.0.0.2") as internal, http_server() as outside:
        outside.handler = lambda seen: (302, {"Location": f"{internal.url}/admin/state"}, b"")
        with pytest.raises(OutboundRefused) as refused:
            outbound_session(follow_redirects=True).get(f"{outside.url}/start", timeout=5)
        assert refused.value.host == "127.0.0.2"
        assert len(outside.seen) == 1 and internal.seen == []


@pytest.mark.parametrize("target", ["ftp://127.0.0.1/", "file:///etc/passwd", "gopher://127.0.0.1:70/_"])
def test_a_redirect_to_another_scheme_is_refused(settings, target):
    with http_server() as outside:
        outside.handler = lambda seen: (302, {"Location": target}, b"")
        with pytest.raises(OutboundRefused) as refused:
            outbound_session(follow_redirects=True).get(outside.url, timeout=5)
    assert "not http or https" in refused.value.reason


def test_clients_that_expect_no_redirect_do_not_follow_one(settings):
    """Connectors and the order check: the redirect comes back as the answer, the new address is never asked."""
    with http_server(host="127.0.0.2") as elsewhere, http_server() as outside:
        outside.handler = lambda seen: (307, {"Location": f"{elsewhere.url}/"}, b"")
        response = outbound_session().post(outside.url, data=b"x", timeout=5)
        assert response.status_code == 307 and elsewhere.seen == []


def test_a_redirect_to_another_host_does_not_carry_the_credentials(settings):
    with http_server(host="127.0.0.2") as elsewhere, http_server() as outside:
        outside.handler = lambda seen: (302, {"Location": f"{elsewhere.url}/landing"}, b"")
        session = outbound_session(follow_redirects=True, secret_headers=["X-Api-Key"])
        headers = {
            "Authorization": "Bearer supplier-secret-1",
            "X-Shopify-Access-Token": "shpat_secret_2",
            "X-Api-Key": "custom-secret-3",
            "Accept": "application/json",
        }
        assert session.get(outside.url, headers=headers, timeout=5).status_code == 200
        assert outside.seen[0].headers["X-Api-Key"] == "custom-secret-3"
        sent_on = elsewhere.seen[0].dump()
    assert "Accept: application/json" in sent_on
    for secret in ("supplier-secret-1", "shpat_secret_2", "custom-secret-3"):
        assert secret not in sent_on


@pytest.mark.parametrize("url", ["ftp://example.com/feed.csv", "file:///etc/passwd", "gopher://example.com/", "//x"])
def test_only_http_and_https_are_spoken(url):
    with pytest.raises((OutboundRefused, requests.exceptions.MissingSchema)) as refused:
        outbound_session().get(url, timeout=5)
    if isinstance(refused.value, OutboundRefused):
        assert "not http or https" in refused.value.reason


def test_a_failed_request_names_neither_the_query_nor_the_user_info():
    base = closed_url()
    host = base.removeprefix("http://")
    for url in (f"{base}/wp-json/wc/v3/products?consumer_key=ck_key_1&consumer_secret=cs_secret_1",
                f"http://admin:pw_secret_1@{host}/feed"):  # fmt: skip
        with pytest.raises(requests.ConnectionError) as failed:
            outbound_session().get(url, timeout=5)
        text = str(failed.value)
        assert "secret_1" not in text and "ck_key_1" not in text
        assert "127.0.0.1" in text  # still says where


def test_an_api_answer_for_a_refused_request_is_a_400_not_a_500():
    request = APIRequestFactory().get("/api/v1/anything")
    response = api_exception_handler(OutboundRefused("10.0.0.5", "10.0.0.5 is a private address"), {"request": request})
    assert response is not None and response.status_code == 400
    assert response.data["code"] == "outbound_refused"
    assert "10.0.0.5" in response.data["detail"] and response.data["host"] == "10.0.0.5"
