"""Every page and API endpoint × admin, operator, viewer, anonymous."""

import json

import pytest
from django.test import Client
from django.urls import reverse

from console.models import ApiToken, AuditEvent, Backend

pytestmark = pytest.mark.django_db


@pytest.fixture
def backend(db):
    # a closed port: pages that probe get a fast "connection refused"
    return Backend.objects.create(name="edge-1", kind="ollama", base_url="http://127.0.0.1:9")


def client_for(request, persona):
    if persona == "anonymous":
        return Client()
    return request.getfixturevalue(f"{persona}_client")


# (method, url name, needs backend arg, allowed personas)
PAGES = [
    ("get", "home", False, {"admin", "operator", "viewer"}),
    ("get", "backend_list", False, {"admin", "operator", "viewer"}),
    ("get", "backend_detail", True, {"admin", "operator", "viewer"}),
    ("get", "backend_create", False, {"admin", "operator"}),
    ("get", "backend_edit", True, {"admin", "operator"}),
    ("get", "backend_delete", True, {"admin", "operator"}),
    ("post", "backend_test", True, {"admin", "operator"}),
    ("get", "backend_discover", False, {"admin", "operator"}),
    ("get", "audit_list", False, {"admin", "operator", "viewer"}),
    ("get", "audit_verify", False, {"admin", "operator", "viewer"}),
    ("get", "user_list", False, {"admin"}),
    ("get", "token_list", False, {"admin", "operator", "viewer"}),
]


@pytest.mark.parametrize("persona", ["admin", "operator", "viewer", "anonymous"])
@pytest.mark.parametrize("method,name,needs_pk,allowed", PAGES,
                         ids=[p[1] for p in PAGES])
def test_pages(request, backend, persona, method, name, needs_pk, allowed):
    client = client_for(request, persona)
    url = reverse(name, args=[backend.pk] if needs_pk else [])
    response = getattr(client, method)(url)
    if persona == "anonymous":
        assert response.status_code == 302 and response["Location"].startswith("/login/")
    elif persona in allowed:
        assert response.status_code == 200
    else:
        assert response.status_code == 403
        assert AuditEvent.objects.filter(action="permission.denied", actor=persona_name(persona)
                                         ).exists()


def persona_name(persona):
    return {"admin": "alice", "operator": "oscar", "viewer": "vera"}[persona]


@pytest.mark.parametrize("persona", ["admin", "operator", "viewer", "anonymous"])
def test_audit_export_page(request, persona):
    response = client_for(request, persona).get(reverse("audit_export", args=["csv"]))
    assert response.status_code == (302 if persona == "anonymous" else 200)


def test_admin_site_only_for_admins(admin_client, operator_client, viewer_client):
    assert admin_client.get("/admin/console/auditevent/").status_code == 200
    assert admin_client.get("/admin/console/backend/").status_code == 200
    for client in (operator_client, viewer_client):
        assert client.get("/admin/console/backend/").status_code == 302


# API: (method, path, body, allowed)
API = [
    ("get", "/api/me", None, {"admin", "operator", "viewer"}),
    ("get", "/api/backends", None, {"admin", "operator", "viewer"}),
    ("post", "/api/backends", {"name": "n", "kind": "ollama",
                               "base_url": "http://127.0.0.1:11434"}, {"admin", "operator"}),
    ("get", "/api/backends/{pk}", None, {"admin", "operator", "viewer"}),
    ("patch", "/api/backends/{pk}", {"notes": "x"}, {"admin", "operator"}),
    ("post", "/api/backends/{pk}/test", None, {"admin", "operator"}),
    ("post", "/api/backends/discover", None, {"admin", "operator"}),
    ("get", "/api/audit", None, {"admin", "operator", "viewer"}),
    ("get", "/api/audit/verify", None, {"admin", "operator", "viewer"}),
    ("get", "/api/audit/export?format=jsonl", None, {"admin", "operator", "viewer"}),
    ("delete", "/api/backends/{pk}", None, {"admin", "operator"}),
]


@pytest.mark.parametrize("persona", ["admin", "operator", "viewer", "anonymous"])
@pytest.mark.parametrize("method,path,body,allowed", API, ids=[f"{a[0]} {a[1]}" for a in API])
def test_api_by_bearer_token(request, backend, settings, persona, method, path, body, allowed):
    settings.TANGLAW_DISCOVERY_PORTS = []
    headers = {}
    if persona != "anonymous":
        from console.actions.users import create_token
        from console.audit import Actor

        user = request.getfixturevalue(f"{persona}_user")
        _, raw = create_token(Actor.system(), user, "t")
        headers["Authorization"] = f"Bearer {raw}"
    client = Client()
    kwargs = {"content_type": "application/json", "headers": headers}
    if body is not None:
        kwargs["data"] = json.dumps(body)
    response = getattr(client, method)(path.format(pk=backend.pk), **kwargs)
    if persona == "anonymous":
        assert response.status_code == 401
    elif persona in allowed:
        assert response.status_code in (200, 201, 204), response.content
    else:
        assert response.status_code == 403


def test_revoked_token_is_refused(operator_user):
    from console.actions.users import create_token, revoke_token
    from console.audit import Actor

    token, raw = create_token(Actor.system(), operator_user, "t")
    client = Client(headers={"Authorization": f"Bearer {raw}"})
    assert client.get("/api/me").json()["role"] == "operator"
    revoke_token(Actor.system(), token)
    assert client.get("/api/me").status_code == 401
    assert ApiToken.objects.get(pk=token.pk).digest != raw  # only the hash is stored


def test_session_api_write_needs_csrf(operator_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator_user)
    response = client.post("/api/backends", data=json.dumps(
        {"name": "x", "kind": "ollama", "base_url": "http://127.0.0.1:11434"}),
        content_type="application/json")
    assert response.status_code == 403
    assert not Backend.objects.filter(name="x").exists()


@pytest.mark.parametrize("path", [
    "/admin/console/job/", "/admin/console/deploymentplan/", "/admin/console/modelrole/",
    "/admin/monitoring/sample/", "/admin/monitoring/alertrule/", "/admin/monitoring/alert/",
    "/admin/monitoring/recommendation/", "/admin/monitoring/delivery/",
    "/admin/agents/mcpserver/"])
def test_admin_browses_every_model(admin_client, path):
    assert admin_client.get(path).status_code == 200
