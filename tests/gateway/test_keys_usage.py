"""What an operator manages for the gateway: keys with limits and their live status,
model aliases, usage (JSON, CSV, pages) and alert rules on a key's budget — each through
the same actions, audited, and refused with a 422 naming the field."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from console.choices import AuditAction
from console.models import ApiToken, AuditEvent, Backend
from gateway import budgets, keys, quota, targets
from gateway.errors import GatewayError
from gateway.models import Alias, Request
from monitoring import alerts
from monitoring.models import Alert, AlertRule

KEYS = "/api/gateway/keys"
ALIASES = "/api/gateway/aliases"
USAGE = "/api/gateway/usage"


def post(client, url, data):
    return client.post(url, json.dumps(data), content_type="application/json")


def patch(client, url, data):
    return client.patch(url, json.dumps(data), content_type="application/json")


def new_key(client, **data):
    response = post(client, KEYS, {"name": "script", **data})
    assert response.status_code == 201, response.content
    return response.json()


def row(token=None, ago=timedelta(minutes=5), status=200, tokens=(0, 0), ttft=None,
        model="local/m", backend=None, agent=None, user=None, **extra):
    return Request.objects.create(
        request_id="r", ts=timezone.now() - ago, token=token,
        user=user or (token.user if token else None), endpoint="chat.completions",
        model=model, backend=backend, agent=agent, status=status, tokens_in=tokens[0],
        tokens_out=tokens[1], ttft_ms=ttft, **extra)


@pytest.fixture
def backends(db):
    return (Backend.objects.create(name="edge", kind="openai_compatible",
                                   base_url="http://127.0.0.1:9/v1"),
            Backend.objects.create(name="cloud", kind="openai_compatible",
                                   base_url="http://127.0.0.1:8/v1"))


# -- keys: actions and API --------------------------------------------------------------


def test_a_key_is_shown_once_and_its_limits_not_its_value_are_audited(operator_client,
                                                                      operator_user):
    expires = (timezone.now() + timedelta(days=30)).replace(microsecond=0)
    created = new_key(operator_client, name="nightly", expires_at=expires.isoformat(),
                      scopes=["inference"], allowed_models=["agent/*", " llama/qwen* "],
                      rpm=60, tokens_per_day=10_000, tokens_per_month=200_000, max_streams=2)
    raw = created["secret"]
    token = ApiToken.objects.get()
    assert raw.startswith("tgl_") and token.digest == ApiToken.digest_of(raw)
    assert (token.user, token.name, token.expires_at, token.scopes, token.allowed_models) == (
        operator_user, "nightly", expires, ["inference"], ["agent/*", "llama/qwen*"])
    assert (token.rpm, token.tokens_per_day, token.tokens_per_month, token.max_streams) == (
        60, 10_000, 200_000, 2)
    assert created["status"]["tokens_today"] == {
        "used": 0, "limit": 10_000, "remaining": 10_000, "percent": 0.0,
        "resets_at": quota.period("day")[1].isoformat().replace("+00:00", "Z")}
    event = AuditEvent.objects.get(action=AuditAction.TOKEN_CREATED)
    assert event.after["rpm"] == 60 and event.after["models"] == ["agent/*", "llama/qwen*"]
    assert event.after["user"] == "oscar" and event.target_id == str(token.pk)
    stored = json.dumps([event.before, event.after, event.detail])
    assert raw not in stored and token.digest not in stored and raw[8:20] not in stored
    listed = operator_client.get(KEYS).json()
    assert [k["id"] for k in listed] == [token.pk] and "secret" not in listed[0]
    assert raw not in operator_client.get(f"{KEYS}/{token.pk}").content.decode()
    assert keys.lookup(raw).rpm == 60  # the gateway sees the limits


@pytest.mark.parametrize(("data", "field"), [
    ({"name": ""}, "name"),
    ({"name": "x" * 101}, "name"),
    ({"rpm": 0}, "rpm"),
    ({"max_streams": 10_001}, "max_streams"),
    ({"tokens_per_day": -5}, "tokens_per_day"),
    ({"tokens_per_month": 10**14}, "tokens_per_month"),
    ({"scopes": ["inference", "root"]}, "scopes"),
    ({"allowed_models": ["two words"]}, "allowed_models"),
    ({"allowed_models": ["m"] * 60 + [f"m{i}" for i in range(60)]}, "allowed_models"),
    ({"expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
    ({"owner_id": 987654}, "owner"),
])
def test_bad_key_input_is_refused_naming_the_field(admin_client, data, field):
    response = post(admin_client, KEYS, {"name": "k", **data})
    assert response.status_code == 422, response.content
    assert field in response.json()["errors"]
    assert not ApiToken.objects.exists()
    assert not AuditEvent.objects.filter(action=AuditAction.TOKEN_CREATED).exists()


def test_input_of_the_wrong_type_is_a_422_naming_the_field_too(operator_client):
    response = post(operator_client, KEYS, {"name": "k", "rpm": "lots"})
    assert response.status_code == 422
    assert ["body", "payload", "rpm"] in [e["loc"] for e in response.json()["detail"]]
    response = post(operator_client, ALIASES, {"name": "a", "targets": "edge/m"})
    assert response.status_code == 422 and "targets" in json.dumps(response.json())


def test_a_viewer_manages_only_their_own_keys(viewer_client, viewer_user, operator_client,
                                               admin_client, operator_user):
    theirs = new_key(operator_client, name="oscar's")
    refused = post(viewer_client, KEYS, {"name": "for oscar", "owner_id": operator_user.pk})
    assert refused.status_code == 403
    denied = AuditEvent.objects.get(action=AuditAction.PERMISSION_DENIED)
    assert denied.actor == "vera" and "gateway.keys.manage" in denied.detail
    for response in (viewer_client.get(f"{KEYS}/{theirs['id']}"),
                     patch(viewer_client, f"{KEYS}/{theirs['id']}", {"rpm": 1}),
                     viewer_client.delete(f"{KEYS}/{theirs['id']}")):
        assert response.status_code == 404
    token = ApiToken.objects.get(pk=theirs["id"])
    assert token.rpm is None and token.revoked_at is None
    mine = new_key(viewer_client, name="vera's")
    assert [k["id"] for k in viewer_client.get(KEYS).json()] == [mine["id"]]
    # admins see and manage everyone's, and may create keys for others
    assert {k["id"] for k in admin_client.get(KEYS).json()} == {theirs["id"], mine["id"]}
    for_oscar = new_key(admin_client, name="by alice", owner_id=operator_user.pk)
    assert for_oscar["owner"] == "oscar"
    assert patch(admin_client, f"{KEYS}/{mine['id']}", {"rpm": 5}).json()["rpm"] == 5
    event = AuditEvent.objects.filter(action=AuditAction.TOKEN_CREATED).latest("seq")
    assert (event.actor, event.after["user"]) == ("alice", "oscar")


def test_changing_limits_is_audited_with_before_and_after(operator_client):
    key = new_key(operator_client, rpm=10, tokens_per_day=500)
    url = f"{KEYS}/{key['id']}"
    changed = patch(operator_client, url, {"rpm": None, "tokens_per_day": 800,
                                           "allowed_models": ["default"]})
    assert changed.status_code == 200
    body = changed.json()
    assert (body["rpm"], body["tokens_per_day"], body["allowed_models"]) == (None, 800,
                                                                              ["default"])
    assert body["status"]["tokens_today"]["remaining"] == 800
    event = AuditEvent.objects.get(action=AuditAction.TOKEN_UPDATED)
    assert (event.before["rpm"], event.after["rpm"]) == (10, None)
    assert (event.before["tokens_per_day"], event.after["tokens_per_day"]) == (500, 800)
    # the same values again change nothing and record nothing
    assert patch(operator_client, url, {"tokens_per_day": 800}).status_code == 200
    assert AuditEvent.objects.filter(action=AuditAction.TOKEN_UPDATED).count() == 1
    bad = patch(operator_client, url, {"max_streams": 0})
    assert bad.status_code == 422 and list(bad.json()["errors"]) == ["max_streams"]


def test_delete_revokes_the_key_at_once_and_keeps_it_listed_as_revoked(operator_client):
    key = new_key(operator_client)
    raw = key["secret"]
    assert keys.lookup(raw) is not None
    assert operator_client.delete(f"{KEYS}/{key['id']}").status_code == 204
    assert keys.lookup(raw) is None
    assert operator_client.delete(f"{KEYS}/{key['id']}").status_code == 204  # already
    assert AuditEvent.objects.filter(action=AuditAction.TOKEN_REVOKED).count() == 1
    assert operator_client.get(KEYS).json() == []
    [revoked] = operator_client.get(KEYS, {"revoked": "true"}).json()
    assert revoked["state"] == "revoked" and revoked["revoked_at"] is not None
    assert patch(operator_client, f"{KEYS}/{key['id']}", {"rpm": 3}).status_code == 409


def test_a_keys_status_reads_todays_and_this_months_requests(operator_user):
    now = datetime(2026, 3, 15, 12, 0, 30, tzinfo=UTC)
    token = ApiToken.objects.create(user=operator_user, name="k", digest="d" * 64, hint="tgl_x",
                                    rpm=10, tokens_per_day=1_000, tokens_per_month=5_000)
    other = ApiToken.objects.create(user=operator_user, name="o", digest="e" * 64, hint="tgl_y")
    for ts, tokens in ((now - timedelta(hours=1), (100, 50)),  # today
                       (now - timedelta(days=2), (300, 0)),  # this month
                       (now - timedelta(days=20), (999, 999))):  # last month
        Request.objects.create(request_id="r", ts=ts, token=token, user=operator_user,
                               endpoint="chat.completions", model="m", status=200,
                               tokens_in=tokens[0], tokens_out=tokens[1])
    status = budgets.statuses([token, other], now)
    assert (status[token.pk].day.used, status[token.pk].month.used) == (150, 450)
    assert (status[token.pk].day.remaining, status[token.pk].month.percent) == (850, 9.0)
    assert status[token.pk].day.resets_at == datetime(2026, 3, 16, tzinfo=UTC)
    assert status[token.pk].month.resets_at == datetime(2026, 4, 1, tzinfo=UTC)
    assert status[token.pk].minute.resets_at == datetime(2026, 3, 15, 12, 1, tzinfo=UTC)
    assert (status[other.pk].day.used, status[other.pk].day.limit) == (0, None)
    # what it read is where the limiter reads it too: the count it would keep
    assert quota.used_tokens(token.pk, "day", now) == 150


@pytest.mark.usefixtures("live_db")
def test_a_keys_status_shows_what_the_limiter_counted(operator_user, operator_client,
                                                      scripted):
    from tests.gateway.conftest import make_key, run, sdk

    Backend.objects.create(name="local", kind="openai_compatible", base_url=scripted.url)
    raw = make_key(operator_user, rpm=5, tokens_per_day=1_000)
    token = ApiToken.objects.get()
    for _ in range(2):
        scripted.add(("completion", {"role": "assistant", "content": "hi"}))

    async def main():
        client = sdk(raw)
        for _ in range(2):
            await client.chat.completions.create(
                model="local/scripted-1", messages=[{"role": "user", "content": "hi"}])

    run(main())
    status = operator_client.get(f"{KEYS}/{token.pk}").json()["status"]
    assert status["requests_this_minute"]["used"] == 2
    assert status["requests_this_minute"]["remaining"] == 3
    assert status["tokens_today"]["used"] == 2 * 25  # the scripted server's 20 in, 5 out
    assert status["tokens_today"]["remaining"] == 950


# -- aliases ----------------------------------------------------------------------------


def test_an_alias_is_created_changed_and_deleted_and_resolution_follows(operator_client,
                                                                        backends):
    edge, cloud = backends
    created = post(operator_client, ALIASES, {
        "name": "fast", "description": "small first",
        "targets": [{"backend_id": edge.pk, "model": "qwen"},
                    {"backend_id": cloud.pk, "model": "gpt"}]})
    assert created.status_code == 201, created.content
    alias = created.json()
    assert [(t["backend"], t["model"]) for t in alias["targets"]] == [("edge", "qwen"),
                                                                      ("cloud", "gpt")]
    assert [t.label for t in targets.table().resolve("fast")] == ["edge/qwen", "cloud/gpt"]
    changed = patch(operator_client, f"{ALIASES}/{alias['id']}", {
        "targets": [{"backend_id": cloud.pk, "model": "gpt"}]})
    assert changed.status_code == 200
    assert [t.label for t in targets.table().resolve("fast")] == ["cloud/gpt"]
    edge.enabled = False
    edge.save()
    renamed = patch(operator_client, f"{ALIASES}/{alias['id']}", {"name": "quick"})
    assert renamed.json()["name"] == "quick"
    with pytest.raises(GatewayError):
        targets.table().resolve("fast")
    assert operator_client.delete(f"{ALIASES}/{alias['id']}").status_code == 204
    with pytest.raises(GatewayError) as gone:
        targets.table().resolve("quick")
    assert gone.value.status == 404
    events = AuditEvent.objects.filter(action__startswith="alias.").order_by("seq")
    assert [e.action for e in events] == ["alias.created", "alias.updated", "alias.updated",
                                          "alias.deleted"]
    assert events[1].before["targets"] == [{"backend": edge.pk, "model": "qwen"},
                                           {"backend": cloud.pk, "model": "gpt"}]
    assert events[3].before["name"] == "quick" and not Alias.objects.exists()


@pytest.mark.parametrize(("data", "field"), [
    ({"name": "edge/qwen"}, "name"),
    ({"name": "agent/helper"}, "name"),
    ({"name": ""}, "name"),
    ({"name": "has space"}, "name"),
    ({"name": "-dash-first"}, "name"),
    ({"targets": []}, "targets"),
    ({"targets": [{"backend_id": 987, "model": "m"}]}, "targets"),
    ({"targets": [{"backend_id": "EDGE", "model": ""}]}, "targets"),
    ({"targets": "TWICE"}, "targets"),
    ({"description": "d" * 201}, "description"),
])
def test_bad_alias_input_is_refused_naming_the_field(operator_client, backends, data, field):
    edge, _ = backends
    if data.get("targets") == [{"backend_id": "EDGE", "model": ""}]:
        data = {"targets": [{"backend_id": edge.pk, "model": "  "}]}
    if data.get("targets") == "TWICE":
        data = {"targets": [{"backend_id": edge.pk, "model": "m"}] * 2}
    response = post(operator_client, ALIASES, {
        "name": "fast", "targets": [{"backend_id": edge.pk, "model": "m"}], **data})
    assert response.status_code == 422, response.content
    assert field in response.json()["errors"]
    assert not Alias.objects.exists()


def test_alias_names_are_unique_and_viewers_only_read_them(operator_client, viewer_client,
                                                           backends):
    edge, _ = backends
    body = {"name": "fast", "targets": [{"backend_id": edge.pk, "model": "m"}]}
    assert post(operator_client, ALIASES, body).status_code == 201
    again = post(operator_client, ALIASES, body)
    assert again.status_code == 422 and "already exists" in again.json()["errors"]["name"][0]
    assert post(viewer_client, ALIASES, {**body, "name": "mine"}).status_code == 403
    alias = Alias.objects.get()
    assert patch(viewer_client, f"{ALIASES}/{alias.pk}", {"name": "x"}).status_code == 403
    assert [a["name"] for a in viewer_client.get(ALIASES).json()] == ["fast"]


# -- usage ------------------------------------------------------------------------------


@pytest.fixture
def traffic(operator_user, viewer_user, backends):
    """Rows with known numbers: oscar's key on two backends, vera's key refused once,
    one request without a key, one too old for 24 h."""
    from agents.models import Agent

    edge, cloud = backends
    helper = Agent.objects.create(name="helper", backend=edge, model="qwen")
    ops = ApiToken.objects.create(user=operator_user, name="ops", digest="a" * 64,
                                  hint="tgl_ops", tokens_per_day=1000)
    vera = ApiToken.objects.create(user=viewer_user, name="=cmd|' /C calc'!A0",
                                   digest="b" * 64, hint="tgl_ver")
    row(ops, timedelta(minutes=10), tokens=(10, 20), ttft=100, backend=edge, model="edge/qwen")
    row(ops, timedelta(hours=2), tokens=(30, 40), ttft=200, backend=edge, model="edge/qwen")
    row(ops, timedelta(hours=3), status=502, tokens=(5, 0), backend=cloud, model="cloud/gpt")
    row(ops, timedelta(hours=4), tokens=(1, 2), ttft=400, backend=edge, agent=helper,
        model="agent/helper")
    row(vera, timedelta(hours=1), status=429, model="edge/qwen")
    row(None, timedelta(minutes=1), status=401, model="edge/qwen")
    row(ops, timedelta(hours=30), tokens=(1000, 1000), ttft=50, backend=edge,
        model="edge/qwen")
    return {"ops": ops, "vera": vera, "edge": edge, "cloud": cloud, "helper": helper}


def by_label(groups):
    return {g["label"]: g for g in groups}


def test_usage_per_key_adds_up_the_window(operator_client, traffic):
    data = operator_client.get(USAGE, {"window": "24h", "group": "key"}).json()
    totals = data["totals"]
    assert (totals["requests"], totals["errors"], totals["limited"]) == (6, 3, 1)
    assert (totals["tokens_in"], totals["tokens_out"]) == (46, 62)
    assert (totals["ttft_p50_ms"], totals["ttft_p95_ms"]) == (200.0, 380.0)
    groups = by_label(data["groups"])
    ops = groups["ops (tgl_ops…)"]
    assert (ops["requests"], ops["errors"], ops["tokens_in"], ops["tokens_out"]) == (4, 1, 46,
                                                                                    62)
    assert (ops["error_rate"], ops["detail"]) == (0.25, "oscar")
    assert (ops["ttft_p50_ms"], ops["ttft_p95_ms"]) == (200.0, 380.0)
    assert ops["status"]["tokens_today"]["limit"] == 1000  # the key's budget beside it
    assert [g["label"] for g in data["groups"]] == [
        "ops (tgl_ops…)", "=cmd|' /C calc'!A0 (tgl_ver…)", "no valid key"]
    assert groups["no valid key"]["key"] is None
    series = data["series"]
    assert series["step"] == "hour" and len(series["ts"]) in (24, 25)
    assert sum(series["requests"]) == 6 and sum(series["tokens_out"]) == 62
    newest = series["ts"].index(max(t for t in series["ts"]
                                    if t <= (timezone.now() - timedelta(minutes=10)).timestamp()))
    assert series["requests"][newest] >= 1
    assert series["by_group"][0] == {"label": "ops (tgl_ops…)",
                                     "requests": series["by_group"][0]["requests"]}
    assert sum(series["by_group"][0]["requests"]) == 4
    week = operator_client.get(USAGE, {"window": "7d", "group": "key"}).json()
    assert week["totals"]["requests"] == 7 and week["totals"]["tokens_in"] == 1046
    month = operator_client.get(USAGE, {"window": "30d"}).json()
    assert month["series"]["step"] == "day" and sum(month["series"]["requests"]) == 7


def test_usage_per_backend_model_agent_and_user(operator_client, traffic):
    def groups(group):
        return by_label(operator_client.get(USAGE, {"group": group}).json()["groups"])

    backends = groups("backend")
    assert (backends["edge"]["requests"], backends["edge"]["tokens_in"]) == (3, 41)
    assert (backends["cloud"]["requests"], backends["cloud"]["errors"]) == (1, 1)
    assert backends["not routed to a backend"]["requests"] == 2
    models = groups("model")
    assert models["edge/qwen"]["requests"] == 4 and models["agent/helper"]["tokens_out"] == 2
    agents = groups("agent")
    assert agents["helper"]["requests"] == 1
    assert agents["pass-through (no agent)"]["requests"] == 5
    users = groups("user")
    assert (users["oscar"]["requests"], users["vera"]["limited"]) == (4, 1)


def test_a_viewer_sees_only_the_usage_of_their_own_keys(viewer_client, traffic):
    data = viewer_client.get(USAGE, {"group": "user"}).json()
    assert [g["label"] for g in data["groups"]] == ["vera"]
    assert data["totals"]["requests"] == 1
    assert data["totals"]["limited"] == 1 and data["totals"]["tokens_in"] == 0
    keyed = viewer_client.get(USAGE, {"group": "backend"}).json()
    assert keyed["totals"]["requests"] == 1  # every grouping: only their own requests
    text = viewer_client.get(f"{USAGE}.csv", {"group": "model"}).content.decode()
    assert len(list(csv.reader(io.StringIO(text)))) == 2  # header and their one model
    assert "oscar" not in viewer_client.get(f"{USAGE}.csv", {"group": "key"}).content.decode()


def test_usage_csv_has_the_table_and_inert_formulas(operator_client, traffic):
    response = operator_client.get(f"{USAGE}.csv", {"window": "24h", "group": "key"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert "gateway-usage-24h-key.csv" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [r["label"] for r in rows] == ["ops (tgl_ops…)", "'=cmd|' /C calc'!A0 (tgl_ver…)",
                                          "no valid key"]
    ops = rows[0]
    assert (ops["requests"], ops["errors"], ops["tokens_in"], ops["ttft_p95_ms"]) == (
        "4", "1", "46", "380.0")
    assert ops["key"] == str(traffic["ops"].pk) and ops["detail"] == "oscar"


@pytest.mark.parametrize("query", [{"window": "1y"}, {"group": "planet"}])
def test_an_unknown_window_or_group_is_a_422(operator_client, query):
    response = operator_client.get(USAGE, query)
    assert response.status_code == 422
    assert list(query) == [e["loc"][-1] for e in response.json()["detail"]]


# -- alert rules on a key's budget --------------------------------------------------------


def test_an_alert_on_a_keys_daily_budget_fires_and_resolves_when_it_is_revoked(
        operator_client, operator_user):
    AlertRule.objects.update(enabled=False)
    key = new_key(operator_client, name="eval", tokens_per_day=1000)
    unlimited = new_key(operator_client, name="free")
    token = ApiToken.objects.get(pk=key["id"])
    rule = post(operator_client, "/api/alert-rules", {
        "name": "Key budget", "metric": "budget_day_pct", "scope": f"key:{token.pk}",
        "comparator": ">=", "threshold": 80, "window_s": 0})
    assert rule.status_code == 201, rule.content
    every = post(operator_client, "/api/alert-rules", {
        "name": "Every key", "metric": "budget_day_pct", "scope": "keys",
        "comparator": ">=", "threshold": 95, "window_s": 0}).json()
    now = timedelta(seconds=1)  # today, whenever the test runs
    row(token, now, tokens=(500, 200))
    assert alerts.evaluate() == {"fired": 0, "resolved": 0}
    assert not Alert.objects.exists()
    row(token, now, tokens=(100, 50))  # 850 of 1000
    assert alerts.evaluate()["fired"] == 1
    alert = Alert.objects.get()
    assert (alert.scope, alert.value, alert.state) == (f"key:{token.pk}", 85.0, "firing")
    assert "budget_day_pct is 85 on key eval" in alert.message
    row(token, now, tokens=(100, 0))  # 950: the rule for every key with a budget fires too
    assert alerts.evaluate()["fired"] == 1
    assert set(Alert.objects.values_list("rule__name", "scope")) == {
        ("Key budget", f"key:{token.pk}"), ("Every key", f"key:{token.pk}")}
    assert alerts.scopes_for(AlertRule.objects.get(pk=every["id"])) == [f"key:{token.pk}"]
    assert unlimited["id"] != token.pk
    assert operator_client.delete(f"{KEYS}/{token.pk}").status_code == 204
    assert set(Alert.objects.values_list("state", "resolved_reason")) == {
        ("resolved", "key eval was revoked")}
    assert alerts.evaluate() == {"fired": 0, "resolved": 0}


@pytest.mark.parametrize(("data", "field"), [
    ({"metric": "budget_day_pct", "scope": "backends"}, "scope"),
    ({"metric": "latency_ms", "scope": "keys"}, "scope"),
    ({"metric": "budget_month_pct", "scope": "key:987654"}, "scope"),
    ({"metric": "budget_day_pct", "scope": "keys", "for_samples": 2}, "for_samples"),
])
def test_a_budget_rule_needs_a_key_scope(operator_client, data, field):
    response = post(operator_client, "/api/alert-rules", {"name": "r", "threshold": 80, **data})
    assert response.status_code == 422, response.content
    assert field in response.json()["errors"]


# -- pages ------------------------------------------------------------------------------


def key_form(**values):
    return {"name": "nightly", "valid_until": "", "allowed_models": "", "rpm": "",
            "tokens_per_day": "", "tokens_per_month": "", "max_streams": "", **values}


def test_the_keys_page_shows_a_new_key_once_with_how_to_call_v1(operator_client):
    response = operator_client.post("/gateway/keys/", key_form(
        rpm="60", tokens_per_day="5000", scopes=["inference"],
        allowed_models="agent/*\r\ndefault", valid_until="2099-12-31"))
    assert response.status_code == 200
    page = response.content.decode()
    token = ApiToken.objects.get()
    raw = response.context["raw"]
    assert token.digest == ApiToken.digest_of(raw) and page.count(raw) == 3  # box, 2 snippets
    assert "http://testserver/v1/chat/completions" in page
    assert 'OpenAI(base_url="http://testserver/v1"' in page
    assert '"model": "default"' in page  # a model the key may use
    assert 'data-copy="new-key"' in page and "no-store" in response["Cache-Control"]
    assert (token.rpm, token.tokens_per_day, token.scopes, token.allowed_models) == (
        60, 5000, ["inference"], ["agent/*", "default"])
    assert timezone.localtime(token.expires_at).date().isoformat() == "2100-01-01"
    again = operator_client.get("/gateway/keys/").content.decode()
    assert raw not in again and "nightly" in again and "0</strong> / 5,000 tokens" in again


def test_the_keys_page_refuses_bad_limits_on_the_field(operator_client):
    response = operator_client.post("/gateway/keys/", key_form(rpm="0"))
    assert response.status_code == 400
    assert "id_rpm-error" in response.content.decode()
    response = operator_client.post("/gateway/keys/", key_form(allowed_models="two words"))
    assert response.status_code == 400
    assert "id_allowed_models-error" in response.content.decode()
    assert not ApiToken.objects.exists()


def test_the_keys_page_costs_the_same_queries_for_one_key_or_many(operator_client,
                                                                  operator_user,
                                                                  django_assert_num_queries):
    def add(n):
        ApiToken.objects.create(user=operator_user, name=f"k{n}", digest=f"{n:064d}",
                                hint="tgl_k", tokens_per_day=100, rpm=5)

    add(1)
    # session, user, the keys, today's and this month's tokens (one query each), the
    # revoked keys
    with django_assert_num_queries(6):
        assert operator_client.get("/gateway/keys/").status_code == 200
    for n in range(2, 7):
        add(n)
    from django.core.cache import cache

    cache.clear()  # no count cached: read again, still once for all keys
    with django_assert_num_queries(6):
        page = operator_client.get("/gateway/keys/").content.decode()
    assert page.count('id="key-') == 6


def test_editing_and_revoking_a_key_on_its_page(operator_client, viewer_client,
                                                operator_user):
    key = new_key(operator_client, rpm=5)
    url = f"/gateway/keys/{key['id']}/edit/"
    form = viewer_client.get(url)
    assert form.status_code == 404  # not theirs
    assert operator_client.get(url).context["form"]["rpm"].value() == 5
    saved = operator_client.post(url, key_form(name="script", rpm="7", max_streams="2"))
    assert saved.status_code == 302
    token = ApiToken.objects.get()
    assert (token.rpm, token.max_streams) == (7, 2)
    bad = operator_client.post(url, key_form(name="script", rpm="-1"))
    assert bad.status_code == 400 and ApiToken.objects.get().rpm == 7
    assert viewer_client.post(f"/gateway/keys/{token.pk}/revoke/").status_code == 404
    assert operator_client.post(f"/gateway/keys/{token.pk}/revoke/").status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    listed = operator_client.get("/gateway/keys/").content.decode()
    assert "Revoked keys (1" in listed and f'id="key-{token.pk}"' not in listed


def test_an_admin_creates_a_key_for_someone_else_on_the_page(admin_client, operator_user,
                                                             viewer_client):
    response = admin_client.post("/gateway/keys/", key_form(owner=str(operator_user.pk)))
    assert response.status_code == 200
    assert ApiToken.objects.get().user == operator_user
    assert "Owner" in admin_client.get("/gateway/keys/").content.decode()
    # a viewer's form has no owner field: a posted owner is ignored, the key is theirs
    viewer_client.post("/gateway/keys/", key_form(name="mine", owner=str(operator_user.pk)))
    assert ApiToken.objects.get(name="mine").user.username == "vera"


def test_alias_pages_create_edit_and_delete(operator_client, viewer_client, backends):
    edge, cloud = backends
    assert viewer_client.get("/gateway/aliases/new/").status_code == 403
    response = operator_client.post("/gateway/aliases/new/", {
        "name": "fast", "description": "", "backend_0": str(edge.pk), "model_0": "qwen",
        "backend_1": "", "model_1": "", "backend_2": str(cloud.pk), "model_2": "gpt"})
    assert response.status_code == 302, response.content
    alias = Alias.objects.get()
    assert alias.targets == [{"backend": edge.pk, "model": "qwen"},
                             {"backend": cloud.pk, "model": "gpt"}]
    bad = operator_client.post(f"/gateway/aliases/{alias.pk}/edit/", {
        "name": "fast", "backend_0": str(edge.pk), "model_0": ""})
    assert bad.status_code == 400 and "enter the model" in bad.content.decode()
    operator_client.post(f"/gateway/aliases/{alias.pk}/edit/", {
        "name": "fast", "backend_0": str(cloud.pk), "model_0": "gpt"})
    assert Alias.objects.get().targets == [{"backend": cloud.pk, "model": "gpt"}]
    listed = viewer_client.get("/gateway/aliases/").content.decode()
    assert "cloud/gpt" in listed and "/gateway/aliases/new/" not in listed
    assert operator_client.post(f"/gateway/aliases/{alias.pk}/delete/").status_code == 302
    assert not Alias.objects.exists()


def test_the_usage_page_says_how_to_start_when_there_is_nothing(viewer_client):
    page = viewer_client.get("/gateway/usage/").content.decode()
    assert "No requests in the last 24 hours" in page
    assert 'href="/gateway/keys/">Create a key</a>' in page
    assert "http://testserver/v1/chat/completions" in page


def test_the_usage_page_has_the_table_the_charts_data_and_the_csv_link(
        operator_client, traffic, django_assert_num_queries):
    # session, user, the counts, the TTFT values, the key names, the keys, their
    # tokens today and this month, whether the user has a key
    with django_assert_num_queries(9):
        response = operator_client.get("/gateway/usage/", {"window": "24h", "group": "key"})
    page = response.content.decode()
    assert response.context["data"]["totals"]["requests"] == 6
    assert 'id="usage-charts" data-series="{&quot;step&quot;: &quot;hour&quot;' in page
    assert 'data-usage-chart="requests"' in page
    assert "/api/gateway/usage.csv?window=24h&amp;group=key" in page
    today = sum(r.tokens_in + r.tokens_out for r in Request.objects.filter(
        token=traffic["ops"], ts__gte=quota.period("day")[0]))
    assert "ops (tgl_ops…)" in page and f"{today}</strong> / 1,000 tokens" in page
    assert "{&#x27;" not in page and "{'" not in page  # no Python repr anywhere
    partial = operator_client.get("/gateway/usage/", {"window": "7d", "group": "model"},
                                  HTTP_HX_REQUEST="true")
    assert "<html" not in partial.content.decode()
    assert partial.context["data"]["totals"]["requests"] == 7
    assert "edge/qwen" in partial.content.decode()


def test_the_alerts_page_offers_a_rule_on_a_keys_budget(operator_client, operator_user):
    key = new_key(operator_client, tokens_per_day=100)
    keys_page = operator_client.get("/gateway/keys/").content.decode()
    assert f"scope=key:{key['id']}" in keys_page
    page = operator_client.get("/alerts/", {"metric": "budget_day_pct",
                                            "scope": f"key:{key['id']}", "threshold": "80"})
    text = page.content.decode()
    assert f'value="key:{key["id"]}"' in text and 'value="80"' in text
    assert '<option value="budget_day_pct" selected>' in text


def test_the_api_tokens_page_points_to_gateway_keys_and_shows_expired_ones(operator_client,
                                                                          operator_user):
    from datetime import timedelta

    from django.utils import timezone

    from tests.gateway.conftest import make_key

    make_key(operator_user, "old one", expires_at=timezone.now() - timedelta(days=1))
    page = operator_client.get("/account/tokens/").content.decode()
    assert 'href="/gateway/keys/"' in page
    assert "expired" in page and ">Revoke</button>" not in page


def test_usage_of_some_backends_only(admin_client, backends, admin_user):
    """A fleet host's page links to the usage of its backends: `backend`, repeated."""
    edge, cloud = backends
    for backend, tokens in ((edge, (10, 5)), (cloud, (100, 50)), (edge, (1, 1))):
        row(backend=backend, tokens=tokens, user=admin_user)
    only = admin_client.get(f"/api/gateway/usage?group=backend&backend={edge.pk}").json()
    assert [g["label"] for g in only["groups"]] == ["edge"]
    assert only["totals"]["requests"] == 2
    both = admin_client.get(f"/api/gateway/usage?group=backend&backend={edge.pk}"
                            f"&backend={cloud.pk}").json()
    assert both["totals"]["requests"] == 3
    page = admin_client.get(f"/gateway/usage/?group=backend&backend={edge.pk}").content.decode()
    assert "served by edge" in page and f"&amp;backend={edge.pk}" in page
    csv_text = admin_client.get(f"/api/gateway/usage.csv?group=backend&backend={cloud.pk}"
                                ).content.decode()
    assert "cloud" in csv_text and "edge" not in csv_text
    refused = admin_client.get("/api/gateway/usage?backend=edge")
    assert refused.status_code == 422
