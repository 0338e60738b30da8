"""Webhooks: the alert as JSON, or a Slack-compatible `{"text": ...}` payload.

Sent through console.egress with the webhook's own host as the allow-list, so an
operator's internal endpoint works while link-local/metadata addresses and
redirects elsewhere do not.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import httpx

from console.egress import Policy, async_transport
from monitoring.notifiers.message import headline, payload

TIMEOUT_S = 10.0


async def _post(url: str, body: dict) -> httpx.Response:
    host = (urlsplit(url).hostname or "").lower()
    async with httpx.AsyncClient(transport=async_transport(Policy((host,))), timeout=TIMEOUT_S,
                                 trust_env=False, follow_redirects=False) as client:
        return await client.post(url, json=body)


def send(channel, event) -> None:
    body = {"text": headline(event)} if channel.slack else payload(event)
    response = asyncio.run(_post(channel.target, body))
    if response.status_code >= 300:
        raise RuntimeError(f"HTTP {response.status_code} from {response.url.host}: "
                           f"{response.text[:200]}")
