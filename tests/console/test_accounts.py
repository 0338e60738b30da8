"""First-run admin, forced password change, users and roles, API tokens."""

import pytest
from django.core.management import call_command
from django.test import Client

from console.models import ApiToken, AuditEvent, User

pytestmark = pytest.mark.django_db


def test_ensure_admin_prints_a_one_time_password_once(capsys):
    call_command("ensure_admin")
    out = capsys.readouterr().out
    password = out.split("password:")[1].split()[0]
    admin = User.objects.get(username="admin")
    assert admin.effective_role == "admin" and admin.is_superuser and admin.must_change_password
    assert admin.check_password(password)
    call_command("ensure_admin")  # a second run reuses the data
    assert capsys.readouterr().out == "" and User.objects.count() == 1


def test_ensure_admin_takes_the_password_from_the_environment(monkeypatch, capsys):
    monkeypatch.setenv("TANGLAW_ADMIN_PASSWORD", "a-chosen-passphrase")
    call_command("ensure_admin")
    admin = User.objects.get()
    assert admin.check_password("a-chosen-passphrase") and not admin.must_change_password
    assert "a-chosen-passphrase" not in capsys.readouterr().out


def test_one_time_password_forces_a_change_first(capsys):
    call_command("ensure_admin")
    password = capsys.readouterr().out.split("password:")[1].split()[0]
    client = Client()
    client.post("/login/", {"username": "admin", "password": password})
    assert client.get("/backends/")["Location"] == "/account/password/"
    response = client.post("/account/password/", {
        "old_password": password, "new_password1": "a-much-better-one-42",
        "new_password2": "a-much-better-one-42"})
    assert response.status_code == 302
    assert client.get("/backends/").status_code == 200
    assert AuditEvent.objects.filter(action="auth.password_changed", actor="admin").exists()


def test_admin_creates_user_and_changes_role(admin_client):
    response = admin_client.post("/users/new/", {"username": "nina", "role": "viewer"})
    password = response.content.decode().split('id="one-time-password">')[1].split("<")[0]
    nina = User.objects.get(username="nina")
    assert nina.check_password(password) and nina.must_change_password
    admin_client.post(f"/users/{nina.pk}/role/", {"role": "operator"})
    nina.refresh_from_db()
    assert nina.role == "operator" and not nina.is_staff
    admin_client.post(f"/users/{nina.pk}/role/", {"role": "admin"})
    nina.refresh_from_db()
    assert nina.is_staff and nina.is_superuser
    actions = list(AuditEvent.objects.order_by("seq").values_list("action", flat=True))
    assert actions[-3:] == ["user.created", "user.role_changed", "user.role_changed"]


def test_bad_role_and_duplicate_user_are_refused(admin_client, viewer_user):
    response = admin_client.post("/users/new/", {"username": "vera", "role": "viewer"})
    assert response.status_code == 400 and "already exists" in response.content.decode()
    admin_client.post(f"/users/{viewer_user.pk}/role/", {"role": "root"})
    viewer_user.refresh_from_db()
    assert viewer_user.role == "viewer"


def test_last_admin_cannot_be_demoted_or_deactivated(admin_client, admin_user):
    admin_client.post(f"/users/{admin_user.pk}/role/", {"role": "viewer"})
    admin_client.post(f"/users/{admin_user.pk}/active/", {"active": "0"})
    admin_user.refresh_from_db()
    assert admin_user.role == "admin" and admin_user.is_active


def test_deactivated_user_loses_access_and_tokens(admin_client, operator_user):
    from console.actions.users import create_token
    from console.audit import Actor

    _, raw = create_token(Actor.system(), operator_user, "t")
    admin_client.post(f"/users/{operator_user.pk}/active/", {"active": "0"})
    assert Client(headers={"Authorization": f"Bearer {raw}"}).get("/api/me").status_code == 401


def test_token_page_shows_the_token_once(viewer_client, viewer_user):
    body = viewer_client.post("/account/tokens/", {"name": "grafana"}).content.decode()
    raw = body.split('id="new-token">')[1].split("<")[0]
    assert raw.startswith("tgl_")
    token = ApiToken.objects.get(user=viewer_user)
    assert token.digest == ApiToken.digest_of(raw) and raw not in token.hint + token.name
    assert raw not in viewer_client.get("/account/tokens/").content.decode()
    assert Client(headers={"Authorization": f"Bearer {raw}"}).get("/api/me").json()[
        "username"] == "vera"


def test_create_api_token_command(operator_user, capsys):
    call_command("create_api_token", "oscar", "--name", "deploy")
    raw = capsys.readouterr().out.strip()
    assert Client(headers={"Authorization": f"Bearer {raw}"}).get("/api/me").json()[
        "role"] == "operator"


def test_security_headers_and_csp(operator_client):
    response = operator_client.get("/")
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "<script>" not in response.content.decode()  # no inline script anywhere
