"""Smaller trust defects, each for its whole class: the forced password change on the
API, viewers' reads that must not probe, chat rates and a socket cap on the WebSocket,
IPv6 spellings of metadata addresses, CSV formulas, no-store on one-time secrets, the
dry-run import, passwords like the user name."""

from __future__ import annotations

import asyncio
import csv
import io

import pytest
from django.test import Client

from console.actions import Invalid
from console.actions.users import create_user, set_password
from console.audit import Actor
from console.models import Backend
from console.urlsafety import UnsafeURL, check_backend_url
from tests.support.sockets import WebsocketCommunicator

pytestmark = pytest.mark.django_db


def test_a_one_time_password_session_cannot_use_the_api(db, django_user_model):
    user, password = create_user(Actor.system(), "nina", "operator")
    client = Client()
    assert client.post("/login/", {"username": "nina", "password": password}).status_code == 302
    for method, path in (("get", "/api/backends"), ("get", "/api/agents"),
                         ("post", "/api/backends/discover"), ("get", "/api/audit")):
        response = getattr(client, method)(path)
        assert response.status_code == 403, path
        assert "choose your own password first" in response.json()["detail"]
    assert client.get("/backends/").status_code == 302  # the pages already redirected


def test_a_viewer_reading_models_never_makes_the_engines_answer(viewer_client,
                                                                 operator_client, fake):
    from monitoring.collectors.gpu import GpuCollector
    from monitoring.worker import Monitor
    from tests.support.fake_nvml import FakeNvml

    engine = fake("ollama")
    Backend.objects.create(name="ollama", kind="ollama", base_url=engine.url)
    Monitor(gpu=GpuCollector(FakeNvml(driver=False)), worker="w",
            fixed_probe_interval=30).probe()
    seen = len(engine.requests)
    listing = viewer_client.get("/api/models").json()
    assert len(engine.requests) == seen  # nothing asked of the engine
    assert [m["id"] for m in listing[0]["models"]] == ["qwen2.5:0.5b", "llama3.2:3b"]
    assert listing[0]["status"] == "healthy"
    assert set(listing[0]["actions"].values()) == {"your role may not change models"}
    operator_client.get("/api/models")
    assert len(engine.requests) > seen  # an operator's read is live


def _socket(cookie: bytes):
    from console.asgi import application

    return WebsocketCommunicator(application, "/ws/chat/", headers=[
        (b"origin", b"http://localhost"), (b"host", b"localhost"), (b"cookie", cookie)])


def _cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


@pytest.mark.usefixtures("live_db")
def test_the_chat_rate_is_the_users_across_sockets_and_the_http_api(operator_user,
                                                                     settings):
    settings.TANGLAW_CHAT_RATE = "2/m"
    cookie = _cookie(operator_user)

    async def main():
        frames = []
        for _ in range(3):  # three sockets, one turn each: the third is over the rate
            ws = _socket(cookie)
            assert (await ws.connect())[0]
            await ws.send_json_to({"type": "user_message", "agent_id": 999999,
                                   "conversation_id": None, "text": "hi"})
            frames.append(await ws.receive_json_from(timeout=10))
            await ws.disconnect()
        return frames

    frames = asyncio.run(main())
    assert [f["code"] for f in frames[:2]] != ["rate_limited"] * 2
    assert frames[2]["code"] == "rate_limited" and frames[2]["retry_after"] >= 1
    client = Client()
    client.force_login(operator_user)
    over = client.post("/api/agents/999999/chat", {"message": "hi"},
                       content_type="application/json")
    assert over.status_code == 429  # the same bucket as the sockets'


@pytest.mark.usefixtures("live_db")
def test_a_user_may_hold_only_so_many_sockets(operator_user, settings):
    settings.TANGLAW_MAX_SOCKETS_PER_USER = 2
    cookie = _cookie(operator_user)

    async def main():
        first, second, third = _socket(cookie), _socket(cookie), _socket(cookie)
        assert (await first.connect())[0] and (await second.connect())[0]
        await third.connect()
        refused = await third.receive_json_from(timeout=5)
        closed = await third.receive_output(timeout=5)
        await first.disconnect()  # a closed socket gives its slot back
        fourth = _socket(cookie)
        assert (await fourth.connect())[0]
        with pytest.raises(asyncio.TimeoutError):
            await fourth.receive_output(timeout=0.5)  # stays open
        await second.disconnect()
        await fourth.disconnect()
        return refused, closed

    refused, closed = asyncio.run(main())
    assert refused["code"] == "too_many_sockets"
    assert closed == {"type": "websocket.close", "code": 4429}


@pytest.mark.parametrize("host", [
    "[::ffff:0:169.254.169.254]",       # IPv4-translated (SIIT)
    "[::ffff:0:a9fe:a9fe]",
    "[64:ff9b:1::169.254.169.254]",     # local-use NAT64
    "[64:ff9b:1:abcd::a9fe:a9fe]",
    "[64:ff9b::a9fe:a9fe]",             # well-known NAT64
    "[2001:0:4136:e378:8000:63bf:5601:5601]",  # Teredo carrying 169.254.169.254
    "[::ffff:0:100.100.100.200]",       # Alibaba's metadata, translated
])
def test_ipv6_spellings_of_metadata_addresses_are_refused(host):
    with pytest.raises(UnsafeURL, match="link-local or cloud-metadata|reserved"):
        check_backend_url(f"http://{host}:8080")


def test_csv_exports_neutralise_formulas(operator_client, admin_client):
    from agents.models import Agent
    from console import audit

    for name in ("=HYPERLINK(\"http://evil\")", "+1+1", "-2+3", "@SUM(A1)", "\tx"):
        audit.record("backend.discovered", Actor(username=name, role="operator"),
                     detail=name)
    rows = list(csv.reader(io.StringIO(b"".join(
        admin_client.get("/audit/export.csv").streaming_content).decode())))
    cells = [c for row in rows[1:] for c in row]
    assert not any(c.startswith(("=", "+", "-", "@", "\t")) for c in cells)
    assert "'=HYPERLINK(\"http://evil\")" in cells
    backend = Backend.objects.create(name="-b", kind="vllm", base_url="http://127.0.0.1:9")
    Agent.objects.create(name="=cmd|' /C calc'!A0", backend=backend, model="m")
    report = operator_client.get("/api/reports/performance?window=24h&format=csv")
    assert not any(c.startswith(("=", "+", "@")) for row in csv.reader(
        io.StringIO(report.content.decode())) for c in row)


def test_pages_with_a_one_time_secret_are_not_stored(admin_client):
    created = admin_client.post("/users/new/", {"username": "newbie", "role": "viewer"})
    assert created.status_code == 200 and "no-store" in created["Cache-Control"]
    token = admin_client.post("/account/tokens/", {"name": "ci"})
    assert "no-store" in token["Cache-Control"]


def test_the_dry_run_refuses_mcp_servers_the_import_refuses(operator_client):
    bad = ("version: 1\nmcp_servers:\n  - {name: 'bad name!', transport: http, "
           "url: 'ftp://x'}\n  - {name: local, transport: stdio, command: /bin/sh}\n")
    dry = operator_client.post("/api/agents/import?dry_run=true", {"yaml": bad},
                               content_type="application/json")
    real = operator_client.post("/api/agents/import", {"yaml": bad},
                                content_type="application/json")
    assert dry.status_code == real.status_code == 422
    assert dry.json()["errors"] == real.json()["errors"]
    assert {"name", "url"} <= {k.split(".")[-1] for k in dry.json()["errors"]}


@pytest.mark.parametrize("password", ["oscar12345x", "12345OSCARx", "xx-Oscar-xx-long",
                                      "racso-is-me-99", "o.s.c.a.r-2026!"])
def test_passwords_like_the_user_name_are_refused(password, operator_user, client):
    with pytest.raises(Invalid, match="user name"):
        set_password(Actor.system(), operator_user, password)
    client.force_login(operator_user)
    from tests.conftest import PASSWORD

    page = client.post("/account/password/", {"old_password": PASSWORD,
                                              "new_password1": password,
                                              "new_password2": password})
    assert page.status_code == 200 and "user name" in page.content.decode()


@pytest.mark.parametrize("path", ["/api/agents/import", "/api/config/apply"])
def test_importing_mcp_servers_lists_their_tools_outside_any_transaction(path, admin_client,
                                                                        monkeypatch):
    """A tool listing is a network round trip; inside a transaction it would hold SQLite's
    write lock for every other writer meanwhile."""
    from django.db import connection

    from agents import tool_actions
    from agents.models import Tool
    from tests.support.mcp_servers import McpHttpServer

    base_depth = len(connection.atomic_blocks)  # the test's own transaction
    depths = []
    real = tool_actions.fetch_tools

    def fetch(server, secrets):
        depths.append(len(connection.atomic_blocks) - base_depth)
        return real(server, secrets)

    monkeypatch.setattr(tool_actions, "fetch_tools", fetch)
    server = McpHttpServer().start()
    try:
        text = (f"version: 1\nmcp_servers:\n"
                f"  - {{name: plant, transport: http, url: '{server.url}'}}\n")
        answer = admin_client.post(path, {"yaml": text}, content_type="application/json")
    finally:
        server.stop()
    assert answer.status_code == 200, answer.content
    assert depths == [0]
    assert Tool.objects.filter(server__name="plant").count() == 4


def test_an_import_that_moves_an_mcp_server_never_sends_its_old_secrets(operator_client,
                                                                       monkeypatch):
    """The tool listing before the import's transaction connects to the new address: the
    secret headers given for the old one must not go with it (review finding)."""
    from agents import tool_actions
    from agents.models import McpServer

    McpServer.objects.create(name="srv", url="http://127.0.0.1:9/mcp",
                             secret_headers='{"Authorization": "Bearer SECRET"}',
                             secret_header_names=["Authorization"])
    sent = []
    monkeypatch.setattr(tool_actions, "fetch_tools",
                        lambda server, secrets: sent.append((server.url, secrets)) or [])
    text = ("version: 1\nmcp_servers:\n  - {name: srv, transport: http, "
            "url: 'http://127.0.0.2:9/mcp', secret_headers: [Authorization]}\n")
    answer = operator_client.post("/api/agents/import", {"yaml": text},
                                  content_type="application/json")
    assert answer.status_code == 200, answer.content
    assert sent == [("http://127.0.0.2:9/mcp", {})]
    assert McpServer.objects.get(name="srv").secret_headers == ""


@pytest.mark.parametrize("port", ["0", "-1", "65536", "65616", "123456789012"])
def test_ports_outside_1_to_65535_are_refused(port):
    with pytest.raises(UnsafeURL, match="port"):
        check_backend_url(f"http://127.0.0.1:{port}")


@pytest.mark.usefixtures("live_db")
def test_a_one_time_password_session_cannot_open_sockets(django_user_model):
    user, password = create_user(Actor.system(), "nina", "operator")
    client = Client()
    client.post("/login/", {"username": "nina", "password": password})
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()

    async def main():
        from console.asgi import application

        chat = _socket(cookie)
        jobs = WebsocketCommunicator(application, "/ws/jobs/", headers=[
            (b"origin", b"http://localhost"), (b"host", b"localhost"), (b"cookie", cookie)])
        return (await chat.connect())[0], (await jobs.connect())[0]

    assert asyncio.run(main()) == (False, False)


@pytest.mark.usefixtures("live_db")
def test_a_socket_whose_handler_crashes_gives_its_slot_back(operator_user, settings,
                                                           monkeypatch):
    from agents.consumers import ChatConsumer

    settings.TANGLAW_MAX_SOCKETS_PER_USER = 1
    cookie = _cookie(operator_user)

    async def boom(self, user, frame):
        raise RuntimeError("a bug in a handler")

    monkeypatch.setattr(ChatConsumer, "user_message", boom)

    async def main():
        first = _socket(cookie)
        assert (await first.connect())[0]
        await first.send_json_to({"type": "user_message", "agent_id": 1,
                                  "conversation_id": None, "text": "hi"})
        with pytest.raises(RuntimeError):
            await first.wait(timeout=5)
        second = _socket(cookie)
        opened = (await second.connect())[0]
        await second.disconnect()
        return opened

    assert asyncio.run(main()) is True


def test_edge_integers_and_unicode_digits():
    from console.safeinput import loads_json

    assert loads_json("-9223372036854775808") == -(2**63)
    with pytest.raises(Exception, match="too large"):
        loads_json("-9223372036854775809")


def test_a_unicode_digit_cursor_is_a_clear_error(admin_client):
    assert admin_client.get("/api/audit", {"cursor": "\u00b2"}).status_code == 422
