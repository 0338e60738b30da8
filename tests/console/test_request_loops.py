"""Requests await the engines on the server's own event loop: no `asyncio.run` on a
request path (a new loop per call, and with it new clients that are never closed);
/api/models and the agent form's model options are async views."""

import ast
import asyncio
from pathlib import Path

import httpx
import pytest
from django.test import Client

from console.backends.ollama import OllamaAdapter
from console.models import AuditEvent, Backend

ROOT = Path(__file__).resolve().parents[2]
# the views, API endpoints and the actions and helpers they call
REQUEST_PATH = sorted([
    *ROOT.glob("console/views/*.py"), *ROOT.glob("console/actions/*.py"),
    *(ROOT / name for name in (
        "console/api.py", "console/discovery.py", "console/siteconfig.py",
        "agents/views.py", "agents/tool_views.py", "agents/api.py", "agents/actions.py",
        "agents/tool_actions.py", "agents/config.py", "monitoring/views.py",
        "monitoring/api.py", "monitoring/advisor.py")),
])


def asyncio_run_lines(source: str) -> list[int]:
    """Lines that use asyncio.run: `asyncio.run(...)`, under any alias of the module, or
    imported by name."""
    tree = ast.parse(source)
    modules = {"asyncio"} | {alias.asname for node in ast.walk(tree)
                             if isinstance(node, ast.Import) for alias in node.names
                             if alias.name == "asyncio" and alias.asname}
    called = [node.lineno for node in ast.walk(tree)
              if isinstance(node, ast.Attribute) and node.attr == "run"
              and isinstance(node.value, ast.Name) and node.value.id in modules]
    imported = [node.lineno for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module == "asyncio"
                and any(alias.name == "run" for alias in node.names)]
    return sorted(called + imported)


def test_the_check_finds_asyncio_run_however_it_is_spelt():
    source = ("import asyncio\nimport asyncio as aio\nfrom asyncio import run\n"
              "asyncio.run(f())\naio.run(f())\nThread(target=asyncio.run)\nasyncio.gather()\n")
    assert asyncio_run_lines(source) == [3, 4, 5, 6]


@pytest.mark.parametrize("path", REQUEST_PATH, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_asyncio_run_on_a_request_path(path):
    # async_to_sync runs the coroutine on the server's loop (under ASGI), where the
    # clients cached per loop are reused; an async view awaits it there directly
    assert asyncio_run_lines(path.read_text()) == [], path


def _asgi_client(session: str) -> httpx.AsyncClient:
    from console.asgi import application

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=application),
                             base_url="http://127.0.0.1", cookies={"sessionid": session})


@pytest.mark.usefixtures("live_db")
def test_requests_ask_the_engines_on_the_servers_one_loop(operator_user, fake, monkeypatch):
    engine = fake("ollama")
    backend = Backend.objects.create(name="ollama", kind="ollama", base_url=engine.url)
    seen = []
    real = OllamaAdapter.list_models

    async def list_models(self):
        # the loop each request's engine call runs on, and the chat client it would share
        seen.append((asyncio.get_running_loop(), self.chat_client()))
        return await real(self)

    monkeypatch.setattr(OllamaAdapter, "list_models", list_models)
    paths = ["/api/models", "/api/models",  # async views
             f"/agents/model-options/?backend={backend.pk}",
             "/models/", f"/backends/{backend.pk}/models/"]  # sync views: async_to_sync

    signed_in = Client()
    signed_in.force_login(operator_user)
    session = signed_in.cookies["sessionid"].value

    async def requests():
        async with _asgi_client(session) as client:
            for path in paths:
                response = await client.get(path)
                assert response.status_code == 200, (path, response.text[:300])
                assert "qwen2.5:0.5b" in response.text, path
        return asyncio.get_running_loop()

    server_loop = asyncio.run(requests())
    assert [loop for loop, _ in seen] == [server_loop] * len(paths)
    assert len({id(chat) for _, chat in seen}) == 1  # one client, not one per request


@pytest.mark.django_db
def test_the_api_rate_still_holds_for_the_async_models_endpoint(operator_client, settings):
    settings.TANGLAW_API_RATE = "2/m"
    codes = [operator_client.get("/api/models").status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    refused = operator_client.get("/api/models")
    assert refused.status_code == 429 and int(refused["Retry-After"]) >= 1
    # each refusal audited once, not again by the API's 429 handler
    assert AuditEvent.objects.filter(action="request.rate_limited").count() == 2


@pytest.mark.django_db
def test_model_options_refuse_like_every_page(viewer_client, fake):
    backend = Backend.objects.create(name="o", kind="ollama", base_url=fake("ollama").url)
    path = f"/agents/model-options/?backend={backend.pk}"
    anonymous = Client().get(path)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/login/")
    assert viewer_client.get(path).status_code == 403
    denied = AuditEvent.objects.get(action="permission.denied")
    assert denied.actor == "vera" and "needs agents.change" in denied.detail
