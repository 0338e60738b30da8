"""A chat completion stream read as plain dicts.

The OpenAI SDK still sends the request (auth, timeouts, HTTP errors as its own
exceptions); this reads the Server-Sent Events of the answer without building a
pydantic object per token, which was the largest share of the web process's time
per token (docs/benchmarks.md, decisions §34). A read timeout mid-stream becomes the
SDK's APITimeoutError, other transport errors its APIConnectionError, an
`{"error": …}` event its APIError, and a malformed event a ValueError — as with the
SDK's own stream. The backend ending the stream is told apart from the stream being
over: `saw_done` says whether `[DONE]` came, and a connection the backend closed or
reset mid-body raises StreamClosed, so the runtime can tell a reply cut off from a
finished one (a finish reason or `[DONE]` ends a reply; a closed connection does not).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx2
import openai
from openai.types.chat import ChatCompletionChunk


class StreamClosed(Exception):
    """The backend closed or reset the connection before the body's end."""

    def __init__(self, how: str) -> None:
        super().__init__(how)
        self.how = how


class ChunkStream:
    def __init__(self, manager: AbstractAsyncContextManager[
            openai.AsyncAPIResponse[openai.AsyncStream[ChatCompletionChunk]]]) -> None:
        self._manager = manager  # `with_streaming_response.create(...)`
        self._response: httpx2.Response | None = None
        self._lines: AsyncIterator[str] | None = None
        self.saw_done = False

    async def open(self) -> ChunkStream:
        api_response = await self._manager.__aenter__()
        self._response = api_response.http_response
        self._lines = self._response.aiter_lines()
        return self

    async def next(self) -> dict[str, Any] | None:
        """The next chunk, or None at the end of the stream."""
        assert self._response is not None and self._lines is not None
        data: list[str] = []
        while True:
            try:
                line = await self._lines.__anext__()
            except StopAsyncIteration:
                return self._event(data) if data else None
            except httpx2.TimeoutException as exc:
                raise openai.APITimeoutError(request=self._response.request) from exc
            except httpx2.RemoteProtocolError as exc:  # a chunked or sized body cut short
                raise StreamClosed("cut the response body short" if "peer closed" in str(exc)
                                   else f"broke the HTTP framing ({exc})") from exc
            except httpx2.ReadError as exc:  # ECONNRESET and the like, mid-body
                raise StreamClosed("reset the connection") from exc
            except httpx2.TransportError as exc:
                raise openai.APIConnectionError(request=self._response.request) from exc
            if line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
            elif not line and data:  # a blank line ends the event
                if data[0].startswith("[DONE]"):
                    self.saw_done = True
                    await self._drain()
                    return None
                return self._event(data)

    def _event(self, data: list[str]) -> dict[str, Any] | None:
        text = "\n".join(data)
        if text.startswith("[DONE]"):
            self.saw_done = True
            return None
        chunk = json.loads(text)
        if not isinstance(chunk, dict):
            raise ValueError(f"a stream event is not a JSON object: {text[:80]}")
        if chunk.get("error"):
            assert self._response is not None
            error = chunk["error"]
            message = error.get("message") if isinstance(error, dict) else None
            raise openai.APIError(message=message if isinstance(message, str) else
                                  "An error occurred during streaming",
                                  request=self._response.request, body=error)
        return chunk

    async def _drain(self) -> None:
        """Read to the end so the HTTP/1.1 connection goes back to the pool."""
        assert self._lines is not None
        with contextlib.suppress(httpx2.HTTPError):
            async for _ in self._lines:
                pass

    async def close(self) -> None:
        await self._manager.__aexit__(None, None, None)


def parts(chunk: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None, list[Any] | None,
                                          str | None]:
    """usage, text, tool-call fragments and finish reason of a chunk (ValueError when a
    field has the wrong shape)."""
    usage = chunk.get("usage")
    choices = chunk.get("choices") or []
    if not isinstance(choices, list) or (usage is not None and not isinstance(usage, dict)):
        raise ValueError("a stream chunk has the wrong shape")
    if not choices:
        return usage, None, None, None
    choice = choices[0]
    delta = choice.get("delta") if isinstance(choice, dict) else None
    if delta is None:
        delta = {}
    if not isinstance(choice, dict) or not isinstance(delta, dict):
        raise ValueError("a stream chunk's choice has the wrong shape")
    text, fragments = delta.get("content"), delta.get("tool_calls")
    if (text is not None and not isinstance(text, str)) or (
            fragments is not None and not isinstance(fragments, list)):
        raise ValueError("a stream chunk's delta has the wrong shape")
    return usage, text, fragments, choice.get("finish_reason")
