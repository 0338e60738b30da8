"""Outbound requests are checked where they connect: the resolved address, every time."""

import asyncio
import ipaddress

import httpx
import pytest

from console import egress
from console.egress import Policy, async_transport, parse_allow_list
from console.urlsafety import UnsafeURL


@pytest.fixture
def dns(monkeypatch):
    """Play DNS: names map to the given addresses; everything else resolves for real."""
    answers: dict[str, list[str]] = {}
    real = egress.resolve

    async def resolve(host, port):
        if host in answers:
            return [ipaddress.ip_address(a) for a in answers[host]]
        return await real(host, port)

    monkeypatch.setattr(egress, "resolve", resolve)
    return answers


def get(url, policy, **kwargs):
    async def go():
        async with httpx.AsyncClient(transport=async_transport(policy), timeout=5) as client:
            return await client.get(url, **kwargs)
    return asyncio.run(go())


def test_allow_list_entries_are_checked():
    assert parse_allow_list([" API.example.com. ", "*.corp.example", "10.0.0.0/8",
                             "192.168.1.20", ""]) == (
        "api.example.com", "*.corp.example", "10.0.0.0/8", "192.168.1.20/32")
    for bad in ("169.254.0.0/16", "0.0.0.0/0", "metadata.google.internal", "bad host",
                "10.0.0.0/99"):
        with pytest.raises(ValueError):
            parse_allow_list([bad])


@pytest.mark.parametrize("host, ip, allow, refused", [
    ("api.example.com", "93.184.216.34", (), None),
    ("api.example.com", "10.1.2.3", (), "private or local"),
    ("api.example.com", "127.0.0.1", (), "private or local"),
    ("api.example.com", "100.64.0.1", (), "private or local"),  # carrier-grade NAT
    ("api.example.com", "::ffff:10.0.0.1", (), "private or local"),
    ("api.example.com", "169.254.169.254", ("api.example.com",), "link-local"),
    ("api.example.com", "fe80::1", ("api.example.com",), "link-local"),
    ("api.example.com", "::ffff:169.254.169.254", ("api.example.com",), "link-local"),
    ("api.example.com", "10.1.2.3", ("api.example.com",), None),
    ("svc.corp.example", "10.1.2.3", ("*.corp.example",), None),
    ("other.example", "10.1.2.3", ("10.0.0.0/8",), None),
    ("other.example", "93.184.216.34", ("api.example.com",), "not in the allow-list"),
])
def test_address_policy(host, ip, allow, refused):
    policy = Policy(parse_allow_list(allow))
    if refused is None:
        policy.check_address(host, ipaddress.ip_address(ip))
    else:
        with pytest.raises(UnsafeURL, match=refused):
            policy.check_address(host, ipaddress.ip_address(ip))


def test_loopback_is_refused_unless_the_allow_list_names_it(echo):
    with pytest.raises(UnsafeURL, match="private or local"):
        get(f"http://127.0.0.1:{echo.port}/x", Policy())
    assert not echo.requests
    assert get(f"http://127.0.0.1:{echo.port}/x", Policy(("127.0.0.1/32",))).status_code == 200
    assert get(f"http://localhost:{echo.port}/x", Policy(("localhost",))).status_code == 200


def test_a_name_resolving_to_link_local_is_refused_before_connecting(dns):
    dns["evil.example"] = ["169.254.169.254"]
    dns["mixed.example"] = ["127.0.0.1", "169.254.169.254"]
    with pytest.raises(UnsafeURL, match="link-local"):
        get("http://evil.example/latest/meta-data/", Policy(("evil.example",)))
    # one bad answer among good ones refuses the name (no retry on the next address)
    with pytest.raises(UnsafeURL, match="link-local"):
        get("http://mixed.example/", Policy(("mixed.example",)))


def test_each_connection_resolves_again_so_rebinding_meets_the_check(echo, dns):
    dns["flip.example"] = ["127.0.0.1"]
    policy = Policy(("127.0.0.1/32",))  # the address is allowed, not the name
    first = get(f"http://flip.example:{echo.port}/one", policy,
                headers={"Connection": "close"})
    assert first.status_code == 200
    dns["flip.example"] = ["169.254.169.254"]  # the DNS answer changes after the first check
    with pytest.raises(UnsafeURL, match="link-local"):
        get(f"http://flip.example:{echo.port}/two", policy)
    assert [r["path"] for r in echo.requests] == ["/one"]


def test_a_redirect_to_a_metadata_address_is_refused(echo):
    policy = Policy(("127.0.0.1/32",))
    with pytest.raises(UnsafeURL, match="link-local or cloud-metadata"):
        get(f"http://127.0.0.1:{echo.port}/redirect?to=http://169.254.169.254/latest/",
            policy, follow_redirects=True)


def test_unix_sockets_and_metadata_names_are_refused():
    with pytest.raises(UnsafeURL, match="cloud-metadata host name"):
        Policy(("metadata.google.internal",)).check_host("metadata.google.internal")
    backend = egress.GuardedBackend(None, Policy())
    with pytest.raises(UnsafeURL, match="Unix sockets"):
        asyncio.run(backend.connect_unix_socket("/var/run/docker.sock"))


# hosts of the backend-URL corpus that parse as hosts (tests/console/test_urlsafety.py),
# plus private and loopback spellings that an empty allow-list must refuse for tools
METADATA_SPELLINGS = ["169.254.169.254", "169.254.169.254.", "2852039166", "0xA9FEA9FE",
                      "0xa9.0xfe.0xa9.0xfe", "0251.0376.0251.0376", "169.254.43518",
                      "::ffff:169.254.169.254", "::ffff:a9fe:a9fe", "::169.254.169.254",
                      "64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::1", "fe80::1",
                      "fd00:ec2::254", "metadata.google.internal", "100.100.100.200",
                      "0.0.0.0", "168.63.129.16"]
PRIVATE_SPELLINGS = ["127.0.0.1", "127.1", "0x7f000001", "2130706433", "0177.0.0.1",
                     "localhost.", "::1", "::ffff:127.0.0.1", "10.1.2.3", "192.168.0.10",
                     "172.16.4.4", "100.64.0.1"]


def url_for(host: str, port: int | None = None) -> str:
    bracketed = f"[{host}]" if ":" in host else host
    return f"http://{bracketed}{f':{port}' if port else ''}/"


# refused before any connection: by the egress check, or by httpx as an invalid URL
# (it rejects octal forms such as 0251.0376.0251.0376 outright)
REFUSALS = (UnsafeURL, httpx.InvalidURL)


@pytest.mark.parametrize("host", METADATA_SPELLINGS)
def test_metadata_spellings_are_refused(host, dns):
    with pytest.raises(REFUSALS):
        get(url_for(host), Policy())


@pytest.mark.parametrize("host", PRIVATE_SPELLINGS)
def test_private_spellings_are_refused_without_the_allow_list(host, dns):
    dns["localhost."] = ["127.0.0.1"]
    with pytest.raises(REFUSALS) as refused:
        get(url_for(host, 9), Policy())
    if refused.type is UnsafeURL:
        assert "private or local" in str(refused.value)


def test_a_name_that_resolves_differently_the_second_time_is_caught(dns, echo):
    dns["twice.example"] = ["127.0.0.1"]
    policy = Policy(("127.0.0.1/32",))
    assert get(f"http://twice.example:{echo.port}/a", policy,
               headers={"Connection": "close"}).status_code == 200
    dns["twice.example"] = ["fd00:ec2::254"]
    with pytest.raises(UnsafeURL, match="link-local or cloud-metadata"):
        get(f"http://twice.example:{echo.port}/b", policy)
    assert len(METADATA_SPELLINGS) + len(PRIVATE_SPELLINGS) >= 30


@pytest.mark.django_db
def test_backends_are_checked_at_connect_time_too(dns, echo):
    """A backend's name saved while it pointed somewhere harmless, then re-pointed at the
    metadata address (DNS rebinding): probes and chats are refused, loopback still works."""
    from console.backends import adapter_for, probe
    from console.models import Backend

    dns["edge.example"] = ["169.254.169.254"]
    backend = Backend.objects.create(name="rebound", kind="openai_compatible",
                                     base_url="http://edge.example:8000/v1")
    report = asyncio.run(probe(adapter_for(backend)))
    assert report.status == "unhealthy" and "link-local or cloud-metadata" in report.error
    local = Backend.objects.create(name="local", kind="openai_compatible",
                                   base_url=f"http://127.0.0.1:{echo.port}/v1")
    assert "link-local" not in asyncio.run(probe(adapter_for(local))).error
