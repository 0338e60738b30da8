"""The middleware chain runs in the server's mode: under ASGI no layer of ours (nor
static files) makes Django cross between the event loop and a thread."""

import pytest
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.base import BaseHandler
from django.test import AsyncClient
from django.urls import reverse


def test_the_asgi_chain_adapts_no_middleware_of_ours(monkeypatch):
    adapted = []
    real = BaseHandler.adapt_method_mode

    def spy(self, is_async, method, method_is_async=None, debug=False, name=None):
        out = real(self, is_async, method, method_is_async, debug, name)
        if out is not method:
            adapted.append(name or getattr(method, "__qualname__", repr(method)))
        return out

    monkeypatch.setattr(BaseHandler, "adapt_method_mode", spy)
    ASGIHandler()  # loads the middleware chain for async
    ours = [a for a in adapted if "console." in a or "whitenoise" in a.lower()
            or a.startswith("middleware ")]
    assert ours == [], adapted


@pytest.mark.usefixtures("live_db")
def test_async_mode_keeps_each_rule(operator_user, admin_user):
    """The same answers from the async chain as from the sync one (tests elsewhere)."""
    import asyncio

    async def main():
        client = AsyncClient()
        static = await client.get("/static/js/chart_axes.js")
        request_id = await client.get("/login/", headers={"X-Request-ID": "abc-123"})
        await client.aforce_login(operator_user)
        huge_id = await client.get("/agents/" + "9" * 30 + "/")
        huge_query = await client.get("/api/audit?limit=" + "9" * 30)
        admin_user.must_change_password = True
        await admin_user.asave()
        await client.aforce_login(admin_user)
        forced = await client.get("/api/backends")
        page = await client.get("/agents/")
        return static, request_id, huge_id, huge_query, forced, page

    static, request_id, huge_id, huge_query, forced, page = asyncio.run(main())
    assert static.status_code == 200
    assert request_id["X-Request-ID"] == "abc-123"
    assert huge_id.status_code == 404
    assert huge_query.status_code == 400 and "limit" in huge_query.json()["errors"]
    assert forced.status_code == 403 and "choose your own password" in forced.json()["detail"]
    assert page.status_code == 302 and page["Location"] == reverse("password_change")
