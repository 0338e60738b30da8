"""HTTP tools: validated on save, secrets write-only, requests checked where they connect."""

import asyncio
import ipaddress
import json

import pytest
import yaml

from agents.models import Tool
from agents.runtime import ToolSpec
from agents.tools import ToolError, execute
from console import egress
from console.models import AuditEvent, Backend
from tests.support.scripted_openai import finish, text, tool_whole

SECRET = "sk-weather-7f3a9c1e2b"


def spec(url, *, method="GET", allow=("127.0.0.1",), secrets=None, headers=None,
         cap=256 * 1024, timeout=5.0):
    return ToolSpec("weather", "http", "Weather", {"type": "object"}, timeout, False, {
        "method": method, "url": url, "headers": headers or {}, "allow_hosts": list(allow),
        "max_response_bytes": cap}, secrets or {})


def call(tool_spec, arguments):
    return asyncio.run(execute(tool_spec, arguments))


def weather_tool(echo, **overrides):
    return {"name": "weather", "kind": "http",
            "description": "Current weather for a city",
            "parameters": {"type": "object", "properties": {
                "city": {"type": "string"}, "units": {"type": "string"}},
                "required": ["city"]},
            "config": {"method": "GET", "url": f"http://127.0.0.1:{echo.port}/v1/weather/{{city}}",
                       "headers": {"Accept": "application/json"},
                       "allow_hosts": ["127.0.0.1"], "max_response_bytes": 65536},
            "secret_headers": {"X-Api-Key": SECRET}, **overrides}


def test_the_url_template_fills_the_path_and_the_rest_goes_in_the_query(echo):
    result = call(spec(f"http://127.0.0.1:{echo.port}/v1/weather/{{city}}",
                       secrets={"X-Api-Key": SECRET}),
                  {"city": "San Pablo/North", "units": "metric"})
    seen = result["body"]
    assert result["status"] == 200 and not result["truncated"]
    assert seen["path"] == "/v1/weather/San%20Pablo%2FNorth"  # one encoded segment
    assert seen["query"] == {"units": "metric"} and seen["headers"]["x-api-key"] == SECRET


@pytest.mark.parametrize("value", ["..", ".", "../admin", "..%2fadmin", "%2e%2e", "%2E%2e/x",
                                   "%252e%252e", "a/../../admin", "..\\admin", " .. ",
                                   "x/./y"])
def test_path_placeholders_cannot_climb_out_of_the_templates_path(echo, value):
    with pytest.raises(ToolError, match="would leave the path"):
        call(spec(f"http://127.0.0.1:{echo.port}/v1/weather/{{city}}"), {"city": value})
    assert not echo.requests  # nothing was sent


def test_dots_in_the_query_or_inside_a_name_are_fine(echo):
    result = call(spec(f"http://127.0.0.1:{echo.port}/v1/weather/{{city}}?q={{q}}"),
                  {"city": "st.louis..mo", "q": "../x"})
    assert result["body"]["path"] == "/v1/weather/st.louis..mo"


def test_post_sends_the_other_arguments_as_json(echo):
    result = call(spec(f"http://127.0.0.1:{echo.port}/items/{{id}}", method="POST"),
                  {"id": 7, "name": "pump", "tags": ["a"]})
    assert result["body"]["method"] == "POST" and result["body"]["path"] == "/items/7"
    assert result["body"]["body"] == {"name": "pump", "tags": ["a"]}


def test_secrets_never_follow_a_redirect_to_another_origin(echo):
    other = f"http://localhost:{echo.port}/elsewhere"
    result = call(spec(f"http://127.0.0.1:{echo.port}/redirect?to={other}",
                       allow=("127.0.0.1", "localhost"), secrets={"X-Api-Key": SECRET}), {})
    first, second = echo.requests
    assert first["headers"]["x-api-key"] == SECRET
    assert "x-api-key" not in second["headers"] and result["body"]["path"] == "/elsewhere"
    same = call(spec(f"http://127.0.0.1:{echo.port}/redirect?to=/same",
                     secrets={"X-Api-Key": SECRET}), {})
    assert same["body"]["headers"]["x-api-key"] == SECRET


def test_a_redirect_to_a_metadata_address_is_refused(echo):
    with pytest.raises(ToolError, match="refused: .*link-local or cloud-metadata"):
        call(spec(f"http://127.0.0.1:{echo.port}/redirect?to=http://169.254.169.254/latest/"
                  f"meta-data/iam"), {})
    with pytest.raises(ToolError, match="not in the allow-list"):
        call(spec(f"http://127.0.0.1:{echo.port}/redirect?to=http://localhost:{echo.port}/"), {})


def test_a_dns_name_resolving_to_a_link_local_address_is_refused(monkeypatch):
    async def resolve(host, port):
        return [ipaddress.ip_address("169.254.169.254")]

    monkeypatch.setattr(egress, "resolve", resolve)
    with pytest.raises(ToolError, match="refused: .*link-local"):
        call(spec("http://weather.attacker.example/v1", allow=("weather.attacker.example",)), {})


def test_private_addresses_need_the_allow_list(echo):
    with pytest.raises(ToolError, match="private or local address"):
        call(spec(f"http://127.0.0.1:{echo.port}/x", allow=()), {})
    assert echo.requests == []


def test_responses_are_capped_and_errors_are_reported(echo):
    big = call(spec(f"http://127.0.0.1:{echo.port}/big?n=50000", cap=1000), {})
    assert big["truncated"] is True and len(big["body"]) == 1000
    with pytest.raises(ToolError, match="HTTP 404 from 127.0.0.1"):
        call(spec(f"http://127.0.0.1:{echo.port}/status/404"), {})
    with pytest.raises(ToolError, match="the argument 'city' is needed"):
        call(spec(f"http://127.0.0.1:{echo.port}/w/{{city}}"), {})


# -- through the API, the audit log and an agent's turn ------------------------

@pytest.mark.django_db
def test_create_validates_every_field(operator_client, echo):
    Tool.objects.create(name="taken", kind="http", description="x", config={})
    bad = operator_client.post("/api/tools", data={
        "name": "taken", "description": "", "parameters": {"type": "array"},
        "config": {"method": "TRACE", "url": "http://{host}/x", "headers": {"Host": "x"},
                   "allow_hosts": ["169.254.0.0/16"], "max_response_bytes": 0}},
        content_type="application/json")
    assert bad.status_code == 422
    errors = bad.json()["errors"]
    assert set(errors) >= {"name", "description", "parameters", "method", "url",
                           "headers.Host", "allow_hosts", "max_response_bytes"}
    assert "never the host" in errors["url"][0]
    metadata = operator_client.post("/api/tools", data=weather_tool(echo, name="m", config={
        "url": "http://169.254.169.254/latest/{city}"}), content_type="application/json")
    assert "link-local or cloud-metadata" in str(metadata.json())
    undeclared = operator_client.post("/api/tools", data=weather_tool(echo, name="u", config={
        "url": "http://api.example.com/{place}"}), content_type="application/json")
    assert "parameters has no property 'place'" in str(undeclared.json())
    assert Tool.objects.filter(kind="http").count() == 1


@pytest.mark.django_db
def test_secret_headers_are_write_only(operator_client, echo):
    created = operator_client.post("/api/tools", data=weather_tool(echo),
                                   content_type="application/json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["secret_header_names"] == ["X-Api-Key"] and SECRET not in json.dumps(body)
    tool = Tool.objects.get(name="weather")
    assert json.loads(tool.secret_headers) == {"X-Api-Key": SECRET}
    pk = body["id"]
    renamed = operator_client.patch(f"/api/tools/{pk}", data={"description": "Weather now"},
                                    content_type="application/json").json()
    assert renamed["secret_header_names"] == ["X-Api-Key"]  # kept when not given
    exported = operator_client.get("/api/agents/export").content.decode()
    assert SECRET not in exported
    assert yaml.safe_load(exported)["tools"][-1]["secret_headers"] == ["X-Api-Key"]
    for page in ("/tools/", f"/api/tools/{pk}", "/api/tools"):
        assert SECRET not in operator_client.get(page).content.decode()
    events = AuditEvent.objects.filter(action__startswith="tool.")
    assert [e.action for e in events.order_by("seq")] == ["tool.created", "tool.updated"]
    assert all(SECRET not in json.dumps([e.before, e.after, e.detail]) for e in events)
    cleared = operator_client.patch(f"/api/tools/{pk}", data={"clear_secret_headers": True},
                                    content_type="application/json").json()
    assert cleared["secret_header_names"] == []
    deleted = operator_client.delete(f"/api/tools/{pk}")
    assert deleted.status_code == 204 and not Tool.objects.filter(pk=pk).exists()
    builtin = Tool.objects.get(name="calculator")
    assert operator_client.delete(f"/api/tools/{builtin.pk}").status_code == 409
    refused = operator_client.patch(f"/api/tools/{builtin.pk}", data={"config": {}},
                                    content_type="application/json")
    assert refused.status_code == 422 and "cannot be changed" in str(refused.json())


@pytest.mark.django_db
def test_an_agent_calls_an_http_tool(operator_client, echo, scripted):
    backend = Backend.objects.create(name="edge", kind="openai_compatible",
                                     base_url=scripted.url)
    tool = operator_client.post("/api/tools", data=weather_tool(echo),
                                content_type="application/json").json()
    agent = operator_client.post("/api/agents", data={
        "name": "forecaster", "backend_id": backend.pk, "model": "scripted-1",
        "tool_ids": [tool["id"]]}, content_type="application/json").json()
    scripted.add(tool_whole("c1", "weather", json.dumps({"city": "Manila"})), finish("tool_calls"))
    scripted.add(text("It is sunny in Manila."), finish())
    reply = operator_client.post(f"/api/agents/{agent['id']}/chat",
                                 data={"message": "weather in Manila?"},
                                 content_type="application/json").json()
    assert reply["reply"] == "It is sunny in Manila."
    [call_out] = reply["tool_calls"]
    assert call_out["name"] == "weather" and call_out["ok"] is True
    assert echo.requests[0]["path"] == "/v1/weather/Manila"
    assert echo.requests[0]["headers"]["x-api-key"] == SECRET
    fed_back = json.loads(scripted.requests[1]["messages"][-1]["content"])
    assert fed_back["type"] == "tool_output" and fed_back["output"]["status"] == 200
    event = AuditEvent.objects.get(action="tool.called")
    assert event.after["name"] == "weather" and SECRET not in json.dumps(event.after)


def test_an_argument_too_long_for_a_url_is_a_tool_error(echo):
    with pytest.raises(ToolError, match="usable URL"):
        call(spec(f"http://127.0.0.1:{echo.port}/v1/weather/{{city}}"), {"city": "x" * 70000})
    with pytest.raises(ToolError, match="usable URL"):
        call(spec(f"http://127.0.0.1:{echo.port}/v1/weather/{{city}}"),
             {"city": "a", "units": "y" * 70000})
