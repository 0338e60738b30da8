"""Gateway test helpers: keys, and the openai SDK pointed at the ASGI app in-process."""

from __future__ import annotations

import asyncio

import httpx2
import openai
import pytest

from console.actions.users import create_token
from console.asgi import application
from console.audit import Actor
from console.models import ApiToken
from gateway import keys, targets, usage
from tests.agents.test_consumer import agent  # noqa: F401 - a fixture for the tests here


@pytest.fixture(autouse=True)
def _fresh_gateway():
    keys.forget()
    targets.forget()
    targets._listed.clear()
    yield
    usage.flush()


def make_key(user, name="script", **limits) -> str:
    token, raw = create_token(Actor.system("test"), user, name)
    if limits:
        ApiToken.objects.filter(pk=token.pk).update(**limits)
        keys.forget()
    return raw


def sdk(raw: str | None, **kwargs) -> openai.AsyncOpenAI:
    transport = httpx2.ASGITransport(app=application)
    return openai.AsyncOpenAI(base_url="http://testserver/v1", api_key=raw or "none",
                              max_retries=0, http_client=httpx2.AsyncClient(
                                  transport=transport, base_url="http://testserver"),
                              **kwargs)


def run(coro):
    return asyncio.run(coro)
