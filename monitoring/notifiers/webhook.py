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
from console.urlsafety import UnsafeURL
from monitoring.notifiers import NotifierError, http_error
from monitoring.notifiers.message import headline, payload

TIMEOUT_S = 10.0


async def _post(url: str, body: dict) -> httpx.Response:
    host = (urlsplit(url).hostname or "").lower()
    async with httpx.AsyncClient(transport=async_transport(Policy((host,))), timeout=TIMEOUT_S,
                                 trust_env=False, follow_redirects=False) as client:
        return await client.post(url, json=body)


def send(channel, event) -> None:
    body = {"text": headline(event)} if channel.slack else payload(event)
    host = urlsplit(channel.target).hostname or channel.target[:100]
    try:
        response = asyncio.run(_post(channel.target, body))
    except UnsafeURL as exc:
        raise NotifierError(f"refused: {exc}", permanent=True) from exc
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        raise NotifierError(f"not a URL this can send to: {exc}", permanent=True) from exc
    except httpx.TimeoutException as exc:
        raise NotifierError(f"no answer within {TIMEOUT_S:g} s from {host}") from exc
    except httpx.HTTPError as exc:  # connection refused or reset, DNS: may pass
        raise NotifierError(f"{type(exc).__name__} from {host}: {exc}") from exc
    if response.status_code >= 300:
        raise http_error(response.status_code, response.url.host, response.text)
