"""In the browser alone: an HTTP tool, an MCP server, a router with a specialist that calls
the tool; the playground shows the route badge and the tool card."""

import json

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import shot, sign_in
from tests.browser.test_chat_journey import add_agent, add_backend
from tests.support.mcp_servers import McpHttpServer
from tests.support.scripted_openai import finish, route_choice, text, tool_whole, usage

pytestmark = pytest.mark.browser


@pytest.fixture
def mcp_http():
    server = McpHttpServer().start()
    yield server
    server.stop()


def test_tools_and_routing_in_the_browser(page, console, scripted, echo, mcp_http):
    sign_in(page, console)
    page.goto(console.url + "/tools/")
    page.get_by_role("button", name="New HTTP tool").click()
    page.locator("input[name=name]").fill("stock_level")
    page.get_by_label("Description").fill("How many of a part are in stock")
    page.get_by_label("URL template").fill(f"http://127.0.0.1:{echo.port}/parts/{{part}}")
    page.get_by_label("Arguments (JSON Schema)").fill(json.dumps({
        "type": "object", "properties": {"part": {"type": "string"}}, "required": ["part"]}))
    page.get_by_label("Secret headers").fill("X-Api-Key: browser-secret-123")
    page.get_by_role("button", name="Create tool").click()
    expect(page.get_by_text("Saved stock_level")).to_be_visible()
    page.goto(console.url + "/tools/http/new/")
    page.locator("input[name=name]").fill("bad_tool")
    page.get_by_label("Description").fill("x")
    page.get_by_label("URL template").fill("http://{host}/x")
    page.get_by_role("button", name="Create tool").click()
    expect(page.get_by_role("alert")).to_contain_text("never the host")
    expect(page.locator("input[name=name]")).to_have_value("bad_tool")
    shot(page, "http-tool-form")
    page.goto(console.url + "/tools/")
    page.get_by_role("link", name="Edit stock_level").click()
    page.get_by_label("Allowed hosts").fill("127.0.0.1")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Saved stock_level")).to_be_visible()

    page.goto(console.url + "/tools/mcp/")
    expect(page.get_by_text("No MCP servers yet")).to_be_visible()
    page.locator("input[name=name]").fill("plant")
    page.locator("input[name=url]").fill(mcp_http.url)
    page.get_by_role("button", name="Register and list tools").click()
    expect(page.get_by_text("Registered plant: 4 tools listed")).to_be_visible()
    expect(page.get_by_role("link", name="plant_pump_status")).to_be_visible()
    shot(page, "mcp-servers")

    add_backend(page, console, "scripted", "openai_compatible", scripted.url)
    add_agent(page, console, "stores", "scripted", "scripted-1", tools=["stock_level"])
    page.goto(console.url + "/agents/new/")
    page.get_by_label("Name", exact=True).fill("front-desk")
    # routing is folded away, and the specialists show only once the kind is router
    expect(page.get_by_label("Specialist 1")).to_be_hidden()
    page.locator("summary", has_text="Routing").click()
    expect(page.get_by_label("Specialist 1")).to_be_hidden()
    page.get_by_label("Kind").select_option("router")
    expect(page.get_by_label("Specialist 1")).to_be_visible()
    page.get_by_label("Backend", exact=True).select_option(label="scripted")
    page.get_by_label("Model", exact=True).fill("scripted-1")
    page.get_by_label("Specialist 1").select_option(label="stores")
    page.get_by_label("Keywords").first.fill("stock, part")
    page.get_by_role("button", name="Create agent").click()
    expect(page.get_by_role("heading", name="front-desk")).to_be_visible()
    expect(page.get_by_text("keywords: stock, part")).to_be_visible()

    scripted.add(route_choice("stores", reason="a stock question"))
    scripted.add(tool_whole("c1", "stock_level", '{"part": "valve-7"}'), finish("tool_calls"),
                 usage(30, 9))
    scripted.add(text("There are 12 valve-7 in stock."), finish(), usage(50, 8))
    page.get_by_role("button", name="Try in playground").click()
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    page.get_by_label("Message").fill("how many valve-7 do we have?")
    page.keyboard.press("Enter")
    expect(page.locator(".route-badge")).to_contain_text("routed to stores: the router chose "
                                                         "stores: a stock question")
    card = page.locator(".tool-card").first
    expect(card).to_contain_text("stock_level")
    expect(card).to_contain_text("ok")
    expect(page.locator(".msg-assistant .body").last).to_have_text(
        "There are 12 valve-7 in stock.")
    assert echo.requests[0]["path"] == "/parts/valve-7"
    assert echo.requests[0]["headers"]["x-api-key"] == "browser-secret-123"
    shot(page, "playground-router")
    assert page.js_errors == []
