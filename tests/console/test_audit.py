"""The audit log: one event per action, secrets masked, the chain verifies, tampering is caught."""

import json

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from console import audit
from console.actions import backends as actions
from console.actions import users as user_actions
from console.audit import Actor
from console.choices import Role
from console.models import AuditCheckpoint, AuditEvent, Backend
from tests.support.audit_tamper import relink, without_triggers

pytestmark = pytest.mark.django_db
KEY = "sk-supersecret-abcd1234"


def events():
    return list(AuditEvent.objects.order_by("seq"))


def test_each_backend_action_writes_exactly_one_event_with_the_key_masked(actor, fake):
    engine = fake("ollama")
    backend = actions.create_backend(actor, {"name": "b", "kind": "ollama",
                                             "base_url": engine.url, "api_key": KEY,
                                             "enabled": True, "connect_timeout_s": 3,
                                             "read_timeout_s": 60})
    actions.update_backend(actor, backend, {"notes": "rack 2", "api_key": KEY + "x"})
    actions.test_backend(actor, backend)
    actions.delete_backend(actor, Backend.objects.get(pk=backend.pk))
    got = events()
    assert [e.action for e in got] == ["backend.created", "backend.updated", "backend.tested",
                                       "backend.deleted"]
    assert got[0].after["api_key_set"] is True and got[0].after["api_key_last4"] == "1234"
    assert got[1].before["notes"] == "" and got[1].after["notes"] == "rack 2"
    assert got[2].after["status"] == "healthy" and got[2].after["models"] == 2
    assert got[0].actor == "oscar" and got[0].role == "operator" and got[0].ip == "127.0.0.1"
    dump = json.dumps([audit.event_fields(e) for e in got])
    assert KEY not in dump and "abcd1234x" not in dump


def test_unchanged_update_writes_nothing(actor):
    backend = actions.create_backend(actor, {"name": "b", "kind": "vllm",
                                             "base_url": "http://10.0.0.5:8000",
                                             "connect_timeout_s": 3, "read_timeout_s": 60})
    actions.update_backend(actor, backend, {"notes": ""})
    assert [e.action for e in events()] == ["backend.created"]


def test_user_role_and_token_actions_are_audited(admin_user, viewer_user):
    admin = Actor(user_id=admin_user.pk, username="alice", role=Role.ADMIN)
    user_actions.change_role(admin, viewer_user, Role.OPERATOR)
    token, raw = user_actions.create_token(admin, viewer_user, "ci")
    user_actions.revoke_token(admin, token)
    got = events()
    assert [e.action for e in got] == ["user.role_changed", "token.created", "token.revoked"]
    assert got[0].before == {"role": "viewer"} and got[0].after == {"role": "operator"}
    assert raw not in json.dumps([audit.event_fields(e) for e in got])


def test_login_logout_and_failed_login_are_audited(client, operator_user):
    from tests.conftest import PASSWORD

    client.post("/login/", {"username": "oscar", "password": "wrong"})
    client.post("/login/", {"username": "nobody", "password": "wrong"})
    client.post("/login/", {"username": "oscar", "password": PASSWORD})
    client.post("/logout/")
    got = events()
    assert [e.action for e in got] == ["auth.login_failed", "auth.login_failed", "auth.login",
                                       "auth.logout"]
    assert "wrong" not in json.dumps([audit.event_fields(e) for e in got])


def test_same_message_for_unknown_user_and_wrong_password(client, operator_user):
    a = client.post("/login/", {"username": "oscar", "password": "wrong"}).content.decode()
    b = client.post("/login/", {"username": "ghost", "password": "wrong"}).content.decode()
    assert "do not match" in a and "do not match" in b


def test_lockout_after_repeated_failures(client, operator_user, settings):
    from tests.conftest import PASSWORD

    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post("/login/", {"username": "oscar", "password": "wrong"})
    response = client.post("/login/", {"username": "oscar", "password": PASSWORD})
    assert response.status_code == 429
    assert "Too many failed sign-ins" in response.content.decode()


def test_chain_links_and_verifies(actor):
    for i in range(5):
        audit.record("backend.discovered", actor, after={"i": i})
    got = events()
    assert got[0].prev_hash == audit.GENESIS
    assert all(b.prev_hash == a.hash for a, b in zip(got, got[1:], strict=False))
    result = audit.verify()
    assert result.ok and result.checked == 5


def test_database_refuses_update_and_delete(actor):
    event = audit.record("backend.discovered", actor)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(detail="edited")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()
    assert AuditEvent.objects.get(pk=event.pk).detail == ""


def test_verify_audit_detects_an_edited_row(actor, capsys):
    for i in range(4):
        audit.record("backend.discovered", actor, after={"i": i})
    call_command("verify_audit")
    assert "OK: 4 events checked" in capsys.readouterr().out
    without_triggers("UPDATE console_auditevent SET detail = 'nothing to see' WHERE seq = 3")
    with pytest.raises(CommandError, match=r"broken at #3: event #3 was changed"):
        call_command("verify_audit")


def test_verify_audit_detects_a_deleted_row(actor):
    for i in range(4):
        audit.record("backend.discovered", actor, after={"i": i})
    without_triggers("DELETE FROM console_auditevent WHERE seq = 2")
    result = audit.verify()
    assert not result.ok and result.first_bad == 2 and "missing" in result.reason


def test_verify_audit_command_exit_code(actor, tmp_path):
    """The command exits non-zero on a broken chain (as an operator would run it)."""
    audit.record("backend.discovered", actor)
    without_triggers("UPDATE console_auditevent SET actor = 'mallory' WHERE seq = 1")
    with pytest.raises(CommandError) as err:
        call_command("verify_audit")
    assert err.value.returncode == 1


def test_unknown_action_is_refused(actor):
    with pytest.raises(ValueError, match="unknown audit action"):
        audit.record("backend.exploded", actor)


def test_audit_page_filters_pages_and_exports(operator_client, actor):
    for i in range(60):
        audit.record("backend.discovered", actor, after={"i": i})
    audit.record("auth.logout", Actor.system("someone"))
    page = operator_client.get("/audit/")
    assert page.status_code == 200 and "Older events" in page.content.decode()
    filtered = operator_client.get("/audit/?action=auth.logout").content.decode()
    assert "someone" in filtered and "Older events" not in filtered
    bad = operator_client.get("/audit/?since=yesterday-ish").content.decode()
    assert "Use a date like" in bad
    total = AuditEvent.objects.count()  # 61 recorded here + the client's sign-in
    api = operator_client.get("/api/audit?limit=50").json()
    second = operator_client.get(f"/api/audit?limit=50&cursor={api['next_cursor']}").json()
    seqs = [e["seq"] for e in api["items"] + second["items"]]
    assert seqs == sorted(seqs, reverse=True) and set(seqs) == set(range(1, total + 1))
    exported = b"".join(operator_client.get("/api/audit/export?format=jsonl").streaming_content)
    lines = [json.loads(line) for line in exported.decode().splitlines()]
    # everything up to the export, which records itself before streaming
    assert [line["seq"] for line in lines[:-1]][:total] == list(range(1, total + 1))
    closing = lines[-1]["checkpoint"]  # a signed statement of the last exported row
    assert closing["seq"] == lines[-2]["seq"] and closing["hash"] == lines[-2]["hash"]
    assert closing["signature"] == audit.sign(closing["seq"], closing["hash"], closing["ts"])
    csv_body = b"".join(operator_client.get("/audit/export.csv?actor=someone").streaming_content)
    assert csv_body.decode().splitlines()[0].startswith("seq,ts,actor")
    assert len(csv_body.decode().splitlines()) == 2
    assert AuditEvent.objects.filter(action="audit.exported").count() == 2


def test_api_verify_reports_first_bad(operator_client, actor):
    audit.record("backend.discovered", actor)
    audit.record("backend.discovered", actor)
    assert operator_client.get("/api/audit/verify").json()["ok"] is True
    without_triggers("UPDATE console_auditevent SET outcome = 'failure' WHERE seq = 2")
    body = operator_client.get("/api/audit/verify").json()
    assert body["ok"] is False and body["first_bad"] == 2


def test_checkpoints_are_signed_every_n_events(actor, settings):
    settings.TANGLAW_AUDIT_CHECKPOINT_EVERY = 3
    for i in range(7):
        audit.record("backend.discovered", actor, after={"i": i})
    assert list(AuditCheckpoint.objects.values_list("seq", flat=True)) == [1, 3, 6]
    on_demand = audit.checkpoint()
    assert on_demand.seq == 7 and on_demand.hash == AuditEvent.objects.get(seq=7).hash
    assert audit.verify().ok


def test_an_inserted_row_is_detected(actor):
    for i in range(3):
        audit.record("backend.discovered", actor, after={"i": i})
    without_triggers("UPDATE console_auditevent SET seq = 4 WHERE seq = 3")
    with connection.cursor() as cursor:
        cursor.execute("UPDATE console_auditevent SET seq = 3 WHERE seq = 2")
    forged = AuditEvent(seq=2, ts=timezone.now(), action="auth.login", actor="mallory",
                        prev_hash=AuditEvent.objects.get(seq=1).hash)
    forged.hash = audit.compute_hash(forged)
    forged.save(force_insert=True)
    result = audit.verify()
    assert not result.ok and result.first_bad == 3 and "does not link" in result.reason


def test_a_whole_chain_rewrite_is_caught_by_the_signed_checkpoints(actor, settings):
    settings.TANGLAW_AUDIT_CHECKPOINT_EVERY = 2
    for i in range(4):
        audit.record("backend.discovered", actor, after={"i": i})
    # rewrite #1 and re-link every later event: the chain itself verifies again
    without_triggers("UPDATE console_auditevent SET actor = 'mallory' WHERE seq = 1")
    relink()
    assert audit._verify_chain(100).ok  # the hash chain alone is fooled
    result = audit.verify()
    assert not result.ok and result.first_bad == 1 and "rewritten" in result.reason


def test_forged_or_removed_checkpoints_are_detected(actor, settings):
    settings.TANGLAW_AUDIT_CHECKPOINT_EVERY = 2
    for i in range(4):
        audit.record("backend.discovered", actor, after={"i": i})
    AuditCheckpoint.objects.filter(seq=2).update(signature="0" * 64)
    result = audit.verify()
    assert not result.ok and "not signed with this site's audit key" in result.reason
    AuditCheckpoint.objects.filter(seq=2).delete()
    result = audit.verify()
    assert not result.ok and result.first_bad == 2 and "checkpoint for event #2 is missing" \
        in result.reason


def test_verify_audit_can_sign_a_checkpoint_first(actor, capsys):
    audit.record("backend.discovered", actor)
    call_command("verify_audit", "--checkpoint")
    out = capsys.readouterr().out
    assert "signed checkpoint #1:" in out and "OK: 1 events checked" in out
    assert AuditCheckpoint.objects.filter(seq=1).exists()


def test_pruning_exports_first_then_anchors_the_rest(actor, tmp_path, settings, capsys):
    import hashlib

    settings.TANGLAW_AUDIT_CHECKPOINT_EVERY = 4
    for i in range(10):
        audit.record("backend.discovered", actor, after={"i": i})
    export = tmp_path / "audit-1-6.jsonl"
    call_command("prune_audit", "--up-to", "6", "--export", str(export))
    assert "exported 6 events" in capsys.readouterr().out
    lines = export.read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["seq"] for r in rows[:-1]] == [1, 2, 3, 4, 5, 6]
    closing = rows[-1]["checkpoint"]
    assert closing["seq"] == 6 and closing["hash"] == rows[5]["hash"]
    assert closing["signature"] == audit.sign(6, closing["hash"], closing["ts"])
    assert list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True))[0] == 7
    pruned = AuditEvent.objects.get(action="audit.pruned")
    assert pruned.after["export_sha256"] == hashlib.sha256(export.read_bytes()).hexdigest()
    assert audit.verify().ok  # the chain starts at #7, anchored by the pruned event
    with pytest.raises(CommandError, match="exists; export to a new file"):
        call_command("prune_audit", "--up-to", "8", "--export", str(export))
    with pytest.raises(CommandError, match="keep at least the newest event"):
        call_command("prune_audit", "--up-to", "999", "--export", str(tmp_path / "x.jsonl"))
    # deleting old events without the anchoring event is caught
    without_triggers(f"DELETE FROM console_auditevent WHERE seq IN (7, {pruned.seq})")
    result = audit.verify()
    assert not result.ok and "no audit.pruned event accounts for them" in result.reason
