"""HTTP tools: an operator-defined request the model fills in with validated arguments.

The config holds the method, a URL template whose ``{placeholders}`` may only
sit in the path or query (the model never chooses the host), plain headers, the
host allow-list and a response size cap. Secret header values live encrypted on
the Tool and reach only the request. Every connection, redirects included, goes
through console.egress; redirects are followed here, at most five, and a secret
header is never sent to a different origin than the one it was configured for.
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any
from urllib.parse import quote, unquote

import httpx

from agents.tools import ToolError
from console.egress import Policy, async_transport, parse_allow_list
from console.urlsafety import UnsafeURL, parse_url

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]{0,63})\}")
HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")
DEFAULT_MAX_BYTES = 256 * 1024
MAX_MAX_BYTES = 8 * 1024 * 1024
MAX_REDIRECTS = 5
FORBIDDEN_HEADERS = {"host", "content-length", "transfer-encoding", "connection"}


def clean_config(raw: Any) -> tuple[dict[str, Any], list[str]]:
    """Validate an HTTP tool's settings. Returns (config, errors as 'field: message')."""
    errors: list[str] = []
    if not isinstance(raw, dict):
        return {}, ["config: give an object with method, url, headers, allow_hosts"]
    method = str(raw.get("method") or "GET").upper()
    if method not in METHODS:
        errors.append(f"method: use one of {', '.join(METHODS)}")
    url = str(raw.get("url") or "").strip()
    try:
        check_template(url)
    except ValueError as exc:
        errors.append(f"url: {exc}")
    headers = raw.get("headers") or {}
    if not isinstance(headers, dict):
        errors.append("headers: give an object of header name → value")
        headers = {}
    for name, value in headers.items():
        if not HEADER_NAME.match(str(name)) or str(name).lower() in FORBIDDEN_HEADERS:
            errors.append(f"headers.{name}: not a header name Tanglaw will send")
        elif not isinstance(value, str) or "\n" in value or "\r" in value:
            errors.append(f"headers.{name}: give a one-line text value")
    try:
        allow = list(parse_allow_list(raw.get("allow_hosts") or []))
    except (ValueError, TypeError) as exc:
        errors.append(f"allow_hosts: {exc}")
        allow = []
    cap = raw.get("max_response_bytes", DEFAULT_MAX_BYTES)
    if not isinstance(cap, int) or isinstance(cap, bool) or not 1 <= cap <= MAX_MAX_BYTES:
        errors.append(f"max_response_bytes: a whole number from 1 to {MAX_MAX_BYTES}")
        cap = DEFAULT_MAX_BYTES
    config = {"method": method, "url": url, "headers": {str(k): v for k, v in headers.items()},
              "allow_hosts": allow, "max_response_bytes": cap}
    return config, errors


def clean_secret_headers(raw: Any) -> tuple[dict[str, str], list[str]]:
    if not raw:
        return {}, []
    if not isinstance(raw, dict):
        return {}, ["secret_headers: give an object of header name → value"]
    errors = [f"secret_headers.{k}: not a header name Tanglaw will send"
              for k in raw if not HEADER_NAME.match(str(k)) or str(k).lower() in
              FORBIDDEN_HEADERS]
    errors += [f"secret_headers.{k}: give a one-line text value" for k, v in raw.items()
               if not isinstance(v, str) or not v or "\n" in v or "\r" in v]
    return {str(k): str(v) for k, v in raw.items()}, errors


def check_template(url: str) -> None:
    """The host part must be fixed: placeholders only in the path and the query."""
    if not url:
        raise ValueError("enter the URL, e.g. https://api.example.com/v1/items/{item_id}")
    if not url.lower().startswith(("http://", "https://")):
        raise ValueError("only http:// and https:// URLs are allowed")
    try:  # the parser the HTTP client itself uses (it also refuses spaces and backslashes)
        parts = parse_url(PLACEHOLDER.sub("x", url))
    except UnsafeURL as exc:
        raise ValueError(str(exc)) from None
    if not parts.host:
        raise ValueError("the URL has no host name")
    authority = url.split("//", 1)[1].split("/", 1)[0].split("?", 1)[0]
    if "{" in authority or "}" in authority:
        raise ValueError("placeholders may only appear in the path or the query, never the host")
    if "@" in authority:
        raise ValueError("user names or passwords in the URL are not allowed; use a secret "
                         "header")
    Policy().check_host(parts.host)  # blocked literals and metadata names, at save time


def placeholders(url: str) -> list[str]:
    return PLACEHOLDER.findall(url)


def render(url: str, arguments: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Fill the URL template (values percent-encoded); return it and the unused arguments."""
    used: set[str] = set()
    query_at = url.find("?") if "?" in url else len(url)

    def fill(match: re.Match) -> str:
        name = match.group(1)
        if name not in arguments or arguments[name] is None:
            raise ToolError(f"the argument {name!r} is needed to build the URL")
        used.add(name)
        value = arguments[name]
        text = value if isinstance(value, str) else json.dumps(value)
        if match.start() < query_at and _climbs(text):
            raise ToolError(f"the argument {name!r} ({text[:40]!r}) would leave the path "
                            f"the tool was given; dot segments are not allowed there")
        return quote(text, safe="")

    rendered = PLACEHOLDER.sub(fill, url)
    # whatever the values were, the request must stay under the template's fixed path
    try:
        fixed = httpx.URL(PLACEHOLDER.split(url.split("?", 1)[0], 1)[0]).path
        path = httpx.URL(rendered).path
    except httpx.InvalidURL as exc:  # e.g. an argument that makes the URL too long
        raise ToolError(f"the arguments do not make a usable URL: {exc}") from None
    if not path.startswith(fixed):
        raise ToolError("the arguments would move the request outside the tool's URL path")
    return rendered, {k: v for k, v in arguments.items() if k not in used}


def _climbs(text: str) -> bool:
    """A value that is, or decodes to, a dot segment: `..`, `.`, `%2e%2E`, `..%2f..`…
    (a server that decodes %2F would otherwise walk up the path)."""
    for _ in range(3):  # values may arrive percent-encoded once or twice
        decoded = unquote(text)
        if decoded == text:
            break
        text = decoded
    return any(segment.strip() in (".", "..") for segment in re.split(r"[/\\]", text))


def _query(arguments: dict[str, Any]) -> dict[str, str]:
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in arguments.items()
            if v is not None}


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


async def execute(spec: Any, arguments: dict) -> Any:
    config = spec.config
    url, rest = render(config["url"], arguments)
    method = config.get("method", "GET")
    policy = Policy(tuple(config.get("allow_hosts") or ()))
    cap = int(config.get("max_response_bytes") or DEFAULT_MAX_BYTES)
    try:  # the query may make the URL too long for the client
        if method in ("GET", "DELETE"):
            url, body = str(httpx.URL(url).copy_merge_params(_query(rest))), None
        else:
            body = rest
        origin = _origin(httpx.URL(url))
    except httpx.InvalidURL as exc:
        raise ToolError(f"the arguments do not make a usable URL: {exc}") from None
    async with httpx.AsyncClient(transport=async_transport(policy), timeout=spec.timeout_s,
                                 follow_redirects=False, trust_env=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            target = httpx.URL(url)
            headers = dict(config.get("headers") or {})
            if _origin(target) == origin:
                headers.update(spec.secrets or {})
            try:
                request = client.build_request(method, url, json=body, headers=headers)
                response = await client.send(request, stream=True)
            except UnsafeURL as exc:
                raise ToolError(f"refused: {exc}") from None
            except httpx.InvalidURL as exc:
                raise ToolError(f"refused: not a valid URL ({exc})") from None
            except httpx.HTTPError as exc:
                raise ToolError(f"{type(exc).__name__} talking to {target.host}: "
                                f"{str(exc)[:200]}") from None
            try:
                if response.is_redirect:
                    location = response.headers.get("location", "")
                    next_url = response.url.join(location)
                    if next_url.scheme not in ("http", "https"):
                        raise ToolError(f"refused a redirect to a {next_url.scheme}: URL")
                    url = str(next_url)
                    if response.status_code in (301, 302, 303) and method != "GET":
                        method, body = "GET", None
                    continue
                data, truncated = await _read_capped(response, cap)
            finally:
                await response.aclose()
            return _result(response, data, truncated)
    raise ToolError(f"more than {MAX_REDIRECTS} redirects")


async def _read_capped(response: httpx.Response, cap: int) -> tuple[bytes, bool]:
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > cap:
            return b"".join(chunks)[:cap], True
    return b"".join(chunks), False


def _result(response: httpx.Response, data: bytes, truncated: bool) -> dict[str, Any]:
    content_type = response.headers.get("content-type", "")
    text = data.decode(response.encoding or "utf-8", errors="replace")
    if response.status_code >= 400:
        raise ToolError(f"HTTP {response.status_code} from {response.url.host}: {text[:200]}")
    body: Any = text
    if "json" in content_type and not truncated:
        with contextlib.suppress(ValueError):
            body = json.loads(text)
    return {"status": response.status_code, "content_type": content_type, "body": body,
            "truncated": truncated}
