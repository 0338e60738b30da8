"""The one client address: forwarding headers count only from configured proxies.

Runs the real ASGI application (console.asgi) through httpx's ASGI transport, which
sets the peer address the way Daphne does, so the middleware, django-axes, the API's
throttle and the audit log are all exercised as in production.
"""

from __future__ import annotations

import asyncio
import ipaddress

import httpx
import pytest

from console.clientaddr import ClientAddressMiddleware, parse_networks, resolve
from console.models import AuditEvent
from tests.conftest import PASSWORD

PEER = "198.51.100.9"
TRUSTED = parse_networks(["127.0.0.1", "10.0.0.0/8", "::1"])

# every spelling a client might use to name another address
SPOOFS = [
    {"X-Forwarded-For": "203.0.113.1"},
    {"X-Forwarded-For": "203.0.113.2, 203.0.113.3"},
    {"X-Forwarded-For": " 203.0.113.4 ,127.0.0.1"},
    {"X-Forwarded-For": "[2001:db8::1]:443"},
    {"X-Forwarded-For": "203.0.113.5:8080"},
    {"X-Real-IP": "203.0.113.6"},
    {"Forwarded": "for=203.0.113.7;proto=https"},
    {"X-Client-IP": "203.0.113.8"},
    {"True-Client-IP": "203.0.113.9"},
    {"CF-Connecting-IP": "203.0.113.10"},
]


@pytest.mark.parametrize("chain,expected", [
    ([], "127.0.0.1"),                                  # the proxy itself
    (["203.0.113.5"], "203.0.113.5"),
    (["6.6.6.6, 203.0.113.5"], "203.0.113.5"),          # client-written hop on the left
    (["6.6.6.6", "203.0.113.5"], "203.0.113.5"),        # two header lines
    (["203.0.113.5, 10.1.2.3"], "203.0.113.5"),         # two trusted proxies in a row
    (["203.0.113.5:5555"], "203.0.113.5"),
    (["[2001:db8::7]:443"], "2001:db8::7"),
    (["::ffff:203.0.113.5"], "203.0.113.5"),
    (["not-an-ip"], "127.0.0.1"),                      # garbage: the proxy vouches only for itself
    (["203.0.113.5, garbage, 10.0.0.1"], "10.0.0.1"),
])
def test_right_most_untrusted_hop_from_a_trusted_proxy(chain, expected):
    assert resolve("127.0.0.1", chain, TRUSTED) == expected


@pytest.mark.parametrize("trusted", [(), TRUSTED])
def test_an_untrusted_peer_is_the_client_whatever_it_sends(trusted):
    assert resolve(PEER, ["203.0.113.5"], trusted) == PEER
    assert resolve(PEER, ["127.0.0.1"], trusted) == PEER


def test_bad_trusted_proxy_setting_names_the_variable():
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="TANGLAW_TRUSTED_PROXIES.*'nginx'"):
        parse_networks(["127.0.0.1", "nginx"])


async def _scope_seen(scope):
    seen = {}

    async def inner(scope, receive, send):
        seen.update(scope)

    await ClientAddressMiddleware(inner, TRUSTED)(scope, None, None)
    return seen


@pytest.mark.parametrize("kind", ["http", "websocket"])
def test_websocket_and_http_scopes_get_the_same_address_and_no_forwarding_headers(kind):
    headers = [(b"x-forwarded-for", b"6.6.6.6, 203.0.113.5"), (b"x-forwarded-proto", b"https"),
               (b"x-real-ip", b"6.6.6.6"), (b"host", b"console")]
    seen = asyncio.run(_scope_seen({"type": kind, "client": ("127.0.0.1", 4000),
                                    "headers": headers, "scheme": "http"}))
    assert seen["client"][0] == "203.0.113.5"
    assert [n for n, _ in seen["headers"]] == [b"host"]
    assert seen["scheme"] == ("https" if kind == "http" else "wss")
    # from an untrusted peer the proto header is not believed either
    seen = asyncio.run(_scope_seen({"type": kind, "client": (PEER, 4000),
                                    "headers": headers, "scheme": "http"}))
    assert seen["client"] == (PEER, 4000) and seen["scheme"] == "http"


def _app_client(peer: str) -> httpx.AsyncClient:
    from console.asgi import application

    transport = httpx.ASGITransport(app=application, client=(peer, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1")


async def _login(client: httpx.AsyncClient, password: str, headers: dict) -> httpx.Response:
    if "csrftoken" not in client.cookies:
        await client.get("/login/")
    return await client.post("/login/", data={
        "username": "oscar", "password": password,
        "csrfmiddlewaretoken": client.cookies["csrftoken"]}, headers=headers)


@pytest.mark.usefixtures("live_db")
def test_forwarding_headers_do_not_get_around_the_lockout(operator_user, settings):
    settings.TANGLAW_TRUSTED_PROXIES = ()

    async def attempt():
        async with _app_client(PEER) as client:
            for headers in SPOOFS[:settings.AXES_FAILURE_LIMIT]:
                await _login(client, "wrong", headers)
            return await _login(client, PASSWORD, SPOOFS[-1])

    response = asyncio.run(attempt())
    assert response.status_code == 429
    assert "Too many failed sign-ins" in response.text


@pytest.mark.usefixtures("live_db")
def test_the_audit_log_records_the_peer_not_a_header(operator_user, settings):
    settings.TANGLAW_TRUSTED_PROXIES = ()

    async def attempts():
        async with _app_client(PEER) as client:
            for headers in SPOOFS[:3]:
                await _login(client, "wrong", headers)

    asyncio.run(attempts())
    ips = set(AuditEvent.objects.filter(action="auth.login_failed").values_list("ip",
                                                                                flat=True))
    assert ips == {PEER}


@pytest.mark.usefixtures("live_db")
def test_behind_a_trusted_proxy_the_forwarded_client_is_recorded(operator_user, settings):
    settings.TANGLAW_TRUSTED_PROXIES = parse_networks(["127.0.0.1"])

    async def attempt():
        async with _app_client("127.0.0.1") as client:
            await _login(client, "wrong", {"X-Forwarded-For": "6.6.6.6, 203.0.113.50"})

    asyncio.run(attempt())
    event = AuditEvent.objects.filter(action="auth.login_failed").get()
    assert event.ip == "203.0.113.50"


def test_api_throttle_identifies_clients_by_address_not_by_header():
    """Django-ninja's own get_ident believes X-Forwarded-For; ours does not."""
    from django.test import RequestFactory

    from console.api import PerUserThrottle

    request = RequestFactory().get("/api/backends", REMOTE_ADDR=PEER,
                                   HTTP_X_FORWARDED_FOR="203.0.113.1")
    assert PerUserThrottle().get_ident(request) == PEER


@pytest.mark.usefixtures("live_db")
def test_prometheus_loopback_scrape_is_refused_when_forwarded(settings):
    """/metrics without a token is for a scraper on this machine; a request a local proxy
    forwarded (trusted or not) comes from elsewhere."""
    settings.TANGLAW_TRUSTED_PROXIES = ()

    async def scrape(headers):
        async with _app_client("127.0.0.1") as client:
            return (await client.get("/metrics", headers=headers)).status_code

    assert asyncio.run(scrape({})) == 200
    for headers in SPOOFS[:4]:
        assert asyncio.run(scrape(headers)) == 401


def test_sync_helper_reads_remote_addr():
    from django.test import RequestFactory

    from console.clientaddr import client_ip

    request = RequestFactory().get("/", REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR="6.6.6.6")
    assert client_ip(request) == "192.0.2.1"
    assert ipaddress.ip_address(client_ip(request))

