"""Sign in with the organisation's identity provider, in Chromium, against the real
console (`manage.py serve`) and a real OpenID provider (npm `oidc-provider`): the
button on the sign-in page, the provider, back signed in with the role the groups give;
out of the groups, the next sign-in is refused with a clear message."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import shot
from tests.support.console_server import ConsoleServer
from tests.support.npm_peers import OidcProvider

pytestmark = pytest.mark.browser

ACCOUNTS = {"oz": {"email": "oz@example.org", "preferred_username": "oz",
                   "groups": ["tanglaw-operators"]}}


@pytest.fixture(scope="module")
def sso_console(tmp_path_factory):
    work = tmp_path_factory.mktemp("sso")
    console = ConsoleServer(work / "data")
    provider = OidcProvider(work, console.url + "/oidc/callback/", ACCOUNTS).start()
    console.env.update(provider.env())
    console.start()
    yield console, provider
    console.stop()
    provider.stop()


def test_an_operator_signs_in_with_the_identity_provider(page, sso_console):
    console, provider = sso_console
    provider.login_as("oz")
    page.goto(console.url + "/")
    expect(page.get_by_role("heading", name="Sign in to Tanglaw")).to_be_visible()
    button = page.get_by_role("button", name="Sign in with Example IdP")
    expect(button).to_be_visible()
    shot(page, "login-sso")
    button.click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.locator(".account-menu summary")).to_contain_text("oz")
    expect(page.locator(".account-menu summary")).to_contain_text("operator")
    # the audit log has the SSO sign-in
    page.goto(console.url + "/audit/?action=auth.sso_login")
    expect(page.locator("table").first).to_contain_text("auth.sso_login")

    # taken out of the group at the provider: the next sign-in is refused
    page.locator(".account-menu summary").click()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in to Tanglaw")).to_be_visible()
    provider.set_accounts({"oz": {**ACCOUNTS["oz"], "groups": ["contractors"]}})
    page.goto(console.url + "/login/")
    page.get_by_role("button", name="Sign in with Example IdP").click()
    expect(page.get_by_role("alert").or_(page.locator(".flash-error"))).to_contain_text(
        "you may not use Tanglaw: not in any group")
    expect(page.get_by_role("heading", name="Sign in to Tanglaw")).to_be_visible()
    shot(page, "login-sso-refused")
    assert page.js_errors == []
