"""Secrets follow the address they were given for: moving a backend, an HTTP tool or an
MCP server to another scheme, host or port clears its stored secret unless the same
edit enters it again, or an admin confirms keeping it; every case is audited."""

from __future__ import annotations

import asyncio

import pytest

from agents import tool_actions
from agents.models import McpServer, Tool
from console.actions import Invalid
from console.actions.backends import create_backend, update_backend
from console.audit import Actor
from console.backends import adapter_for
from console.choices import Role
from console.models import AuditEvent, Backend

pytestmark = pytest.mark.django_db
KEY = "sk-secret-0123456789"
OPERATOR = Actor(user_id=None, username="oscar", role=Role.OPERATOR)
ADMIN = Actor(user_id=None, username="alice", role=Role.ADMIN)

# (from, to): every way of pointing the same field somewhere else
MOVES = [
    ("http://127.0.0.1:{port}", "http://127.0.0.2:{port}"),      # host
    ("http://127.0.0.1:{port}", "http://127.0.0.1:{other}"),     # port
    ("http://127.0.0.1:{port}", "https://127.0.0.1:{port}"),     # scheme
    ("http://localhost:{port}", "http://localhost.:{other}"),
    ("http://127.0.0.1:80", "http://127.0.0.1:8080"),
    ("http://127.0.0.1", "http://127.0.0.1:8080"),               # implicit → explicit port
    ("http://[::1]:{port}", "http://127.0.0.1:{port}"),
]
# the same origin spelled differently keeps the secret
SAME = [
    ("http://127.0.0.1:{port}", "http://127.0.0.1:{port}/v1"),   # path only
    ("http://localhost:{port}", "http://LOCALHOST:{port}"),      # case
    ("http://127.0.0.1", "http://127.0.0.1:80"),                 # default port
    ("https://127.0.0.1", "https://127.0.0.1:443"),
]


def spell(template: str, port=8123, other=8124) -> str:
    return template.format(port=port, other=other)


def backend_with_key(url: str) -> Backend:
    return create_backend(OPERATOR, {"name": "b", "kind": "openai_compatible",
                                     "base_url": url, "api_key": KEY, "enabled": True,
                                     "connect_timeout_s": 3, "read_timeout_s": 60})


@pytest.mark.parametrize("old,new", MOVES)
def test_moving_a_backend_clears_its_key_and_says_so(old, new):
    backend = backend_with_key(spell(old))
    update_backend(OPERATOR, backend, {"base_url": spell(new)})
    backend.refresh_from_db()
    assert backend.api_key == "" and backend.api_key_last4 == ""
    event = AuditEvent.objects.filter(action="backend.updated").latest("seq")
    assert event.detail.startswith("api_key cleared: the address moved from")
    assert event.after["api_key_set"] is False and KEY not in str(event.after)


@pytest.mark.parametrize("old,new", SAME)
def test_the_same_origin_spelled_differently_keeps_the_key(old, new):
    backend = backend_with_key(spell(old))
    update_backend(OPERATOR, backend, {"base_url": spell(new)})
    backend.refresh_from_db()
    assert backend.api_key == KEY


def test_a_key_entered_with_the_move_is_the_one_kept():
    backend = backend_with_key("http://127.0.0.1:8123")
    update_backend(OPERATOR, backend, {"base_url": "http://127.0.0.2:8123",
                                       "api_key": "sk-new-key-9999"})
    backend.refresh_from_db()
    assert backend.api_key == "sk-new-key-9999"


def test_only_an_admin_may_keep_a_key_for_a_new_address():
    backend = backend_with_key("http://127.0.0.1:8123")
    with pytest.raises(Invalid) as refused:
        update_backend(OPERATOR, backend, {"base_url": "http://127.0.0.2:8123",
                                           "keep_api_key": True})
    assert "keep_api_key" in refused.value.errors
    backend.refresh_from_db()
    assert backend.base_url.startswith("http://127.0.0.1:8123") and backend.api_key == KEY
    update_backend(ADMIN, backend, {"base_url": "http://127.0.0.2:8123", "keep_api_key": True})
    backend.refresh_from_db()
    assert backend.api_key == KEY and backend.base_url.startswith("http://127.0.0.2:8123")
    event = AuditEvent.objects.filter(action="backend.updated").latest("seq")
    assert event.detail.startswith("api_key kept for the new address by an admin")


def test_the_new_host_never_sees_the_old_key(fake, operator_client):
    first, second = fake("openai_compatible"), fake("openai_compatible")
    backend = backend_with_key(first.url)
    answer = operator_client.patch(f"/api/backends/{backend.pk}",
                                   {"base_url": second.url}, content_type="application/json")
    assert answer.status_code == 200 and answer.json()["api_key_set"] is False
    backend.refresh_from_db()

    async def probe():
        async with adapter_for(backend).session() as adapter:
            return await adapter.list_models()

    asyncio.run(probe())
    assert second.requests and all(KEY not in str(r["headers"]) for r in second.requests)


def test_the_edit_page_warns_and_offers_admins_to_keep(fake, operator_client, admin_client):
    backend = backend_with_key("http://127.0.0.1:8123")
    form = {"name": "b", "kind": "openai_compatible", "base_url": "http://127.0.0.1:8123",
            "connect_timeout_s": 3, "read_timeout_s": 60, "enabled": "on"}
    assert "keep_api_key" not in operator_client.get(
        f"/backends/{backend.pk}/edit/").content.decode()
    assert "keep_api_key" in admin_client.get(f"/backends/{backend.pk}/edit/").content.decode()
    refused = operator_client.post(f"/backends/{backend.pk}/edit/",
                                   {**form, "base_url": "http://127.0.0.2:8123",
                                    "keep_api_key": "on"})
    assert refused.status_code == 200 and "only an admin may keep" in refused.content.decode()
    moved = operator_client.post(f"/backends/{backend.pk}/edit/",
                                 {**form, "base_url": "http://127.0.0.2:8123"}, follow=True)
    assert "enter it again for the new address" in moved.content.decode()
    assert Backend.objects.get(pk=backend.pk).api_key == ""


def http_tool(url: str) -> Tool:
    return tool_actions.create_tool(OPERATOR, {
        "name": "weather", "description": "the weather", "kind": "http",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        "config": {"method": "GET", "url": url}, "secret_headers": {"X-Api-Key": KEY}})


@pytest.mark.parametrize("old,new", MOVES)
def test_moving_an_http_tool_clears_its_secret_headers(old, new):
    tool = http_tool(spell(old) + "/weather/{city}")
    tool_actions.update_tool(OPERATOR, tool, {"config": {"method": "GET",
                                                         "url": spell(new) + "/w/{city}"}})
    tool.refresh_from_db()
    assert tool.secret_headers == "" and tool.secret_header_names == []
    event = AuditEvent.objects.filter(action="tool.updated").latest("seq")
    assert event.detail.startswith("secret_headers cleared")


@pytest.mark.parametrize("old,new", SAME)
def test_an_http_tool_on_the_same_origin_keeps_them(old, new):
    tool = http_tool(spell(old) + "/weather/{city}")
    tool_actions.update_tool(OPERATOR, tool, {"config": {"method": "GET",
                                                         "url": spell(new) + "/w/{city}"}})
    tool.refresh_from_db()
    assert tool.secret_header_names == ["X-Api-Key"]


def test_an_admin_may_keep_an_http_tools_secrets_and_an_operator_may_not():
    tool = http_tool("http://127.0.0.1:8123/weather/{city}")
    change = {"config": {"method": "GET", "url": "http://127.0.0.2:8123/weather/{city}"},
              "keep_secret_headers": True}
    with pytest.raises(Invalid):
        tool_actions.update_tool(OPERATOR, tool, change)
    tool_actions.update_tool(ADMIN, tool, change)
    tool.refresh_from_db()
    assert tool.secret_header_names == ["X-Api-Key"]


@pytest.mark.parametrize("old,new", MOVES)
def test_moving_an_mcp_server_clears_its_secret_headers(old, new, admin_user):
    server = tool_actions.create_server(OPERATOR, admin_user, {
        "name": "plant", "transport": "http", "url": spell(old) + "/mcp",
        "secret_headers": {"Authorization": f"Bearer {KEY}"}})
    tool_actions.update_server(OPERATOR, admin_user, server, {"url": spell(new) + "/mcp"})
    server = McpServer.objects.get(pk=server.pk)
    assert server.secret_headers == "" and server.secret_header_names == []
    event = AuditEvent.objects.filter(action="mcp_server.updated").latest("seq")
    assert event.detail.startswith("secret_headers cleared")
