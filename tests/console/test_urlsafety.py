"""Backend URLs: link-local and metadata refused however spelled; loopback and private allowed."""

import pytest

from console.urlsafety import UnsafeURL, check_backend_url

REFUSED = [
    "http://169.254.169.254/latest/meta-data",
    "http://169.254.169.254.:80",
    "http://2852039166/",                 # decimal
    "http://0xA9FEA9FE/",                 # hex
    "http://0xa9.0xfe.0xa9.0xfe/",        # dotted hex
    "http://0251.0376.0251.0376/",        # octal
    "http://169.254.43518/",              # two-part
    "http://[::ffff:169.254.169.254]/",   # IPv4-mapped
    "http://[::ffff:a9fe:a9fe]/",         # IPv4-mapped, hex
    "http://[::169.254.169.254]/",        # IPv4-compatible
    "http://[64:ff9b::a9fe:a9fe]/",       # NAT64
    "http://[2002:a9fe:a9fe::1]/",        # 6to4
    "http://[fe80::1]/",                  # IPv6 link-local
    "http://[fe80::1%25eth0]:8080/",      # with zone id
    "http://[fd00:ec2::254]/",            # AWS IPv6 metadata
    "http://metadata.google.internal/",
    "http://100.100.100.200/",            # Alibaba metadata
    "http://user:pass@127.0.0.1:11434/",  # userinfo
    "http://127.0.0.1:11434@169.254.169.254/",  # userinfo trick
    "http://127.0.0.1\\@169.254.169.254/",      # backslash trick
    "ftp://127.0.0.1/",
    "file:///etc/passwd",
    "javascript:alert(1)",
    "http://0.0.0.0:11434/",
    "http:///nohost",
    "http://127.0.0.1:11434/?key=x",
    "",
]
ACCEPTED = [
    "http://127.0.0.1:11434",
    "http://localhost:8080/",
    "http://[::1]:8000",
    "http://10.0.0.5:8000",
    "http://192.168.1.20:11434",
    "http://172.16.4.4:1234/v1",
    "https://api.openai.com/v1",
    "http://jetson.local:11434",
]


@pytest.mark.parametrize("url", REFUSED)
def test_refused(url):
    with pytest.raises(UnsafeURL):
        check_backend_url(url)


@pytest.mark.parametrize("url", ACCEPTED)
def test_accepted(url):
    assert check_backend_url(url) == url.rstrip("/")


def test_refusal_is_a_form_error_and_audited(operator_client):
    from console.models import AuditEvent, Backend

    response = operator_client.post("/backends/new/", {
        "name": "meta", "kind": "ollama", "base_url": "http://0xA9FEA9FE/",
        "connect_timeout_s": 3, "read_timeout_s": 60, "enabled": "on"})
    assert response.status_code == 200
    assert "link-local or cloud-metadata" in response.content.decode()
    assert not Backend.objects.exists()
    event = AuditEvent.objects.get(action="backend.url_refused")
    assert event.outcome == "denied" and event.actor == "oscar"


def test_refusal_through_the_api(operator_client):
    response = operator_client.post("/api/backends", data={
        "name": "meta", "kind": "vllm", "base_url": "http://[::ffff:169.254.169.254]:8000"},
        content_type="application/json")
    assert response.status_code == 422
    assert "base_url" in response.json()["errors"]
