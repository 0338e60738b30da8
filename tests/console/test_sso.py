"""Single sign-on against a real OpenID provider (npm `oidc-provider`, the certified Node
implementation) on loopback: the code flow with PKCE and a nonce, roles from the groups
claim, a user taken out of the groups loses access at the next sign-in, a bad state or
nonce is refused, every SSO sign-in is audited, local passwords stay for admins."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urljoin, urlsplit, urlunsplit

import httpx
import pytest

from console import sso
from console.models import ApiToken, AuditEvent, User
from tests.support.npm_peers import OidcProvider

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

CALLBACK = "http://testserver/oidc/callback/"
ACCOUNTS = {
    "ada": {"email": "ada@example.org", "preferred_username": "ada",
            "groups": ["tanglaw-admins"]},
    "oz": {"email": "oz@example.org", "preferred_username": "oz",
           "groups": ["tanglaw-operators", "everyone"]},
    "nobody": {"email": "nobody@example.org", "preferred_username": "nobody",
               "groups": ["everyone"]},
}


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    server = OidcProvider(tmp_path_factory.mktemp("oidc"), CALLBACK, ACCOUNTS).start()
    yield server
    server.stop()


@pytest.fixture
def configured(settings, provider):
    provider.set_accounts(ACCOUNTS)
    for name, value in provider.env().items():
        if name.endswith("_GROUPS"):
            value = [value]
        setattr(settings, name, value)
    settings.OIDC_RP_CLIENT_ID = provider.client_id
    settings.OIDC_RP_CLIENT_SECRET = provider.client_secret
    settings.AUTHENTICATION_BACKENDS = [*settings.AUTHENTICATION_BACKENDS, "console.sso.Backend"]
    sso._discovery.clear()
    yield provider
    sso._discovery.clear()


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def _with(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(query=urlencode({**_query(url), **changes})))


def sign_in(client, provider, account, *, tamper_auth=None, tamper_callback=None):
    """The whole flow: the console's redirect, the provider (which signs `account` in),
    back to the console's callback. Returns the callback's response."""
    provider.login_as(account)
    start = client.get("/oidc/authenticate/")
    assert start.status_code == 302, start
    url = start["Location"]
    if tamper_auth:
        url = tamper_auth(url)
    with httpx.Client(follow_redirects=False, timeout=20) as browser:
        answer = browser.get(url)
        while answer.status_code in (302, 303) and not answer.headers["location"].startswith(
                "http://testserver"):
            answer = browser.get(urljoin(str(answer.url), answer.headers["location"]))
        assert answer.status_code in (302, 303), answer.text[:500]
        back = answer.headers["location"]
    if tamper_callback:
        back = tamper_callback(back)
    return client.get(back.removeprefix("http://testserver"))


def test_an_admin_signs_in_with_pkce_and_a_nonce(client, configured):
    start = client.get("/oidc/authenticate/")
    asked = _query(start["Location"])
    assert start["Location"].startswith(configured.issuer + "/auth?")
    assert asked["code_challenge_method"] == "S256" and len(asked["code_challenge"]) >= 43
    assert asked["nonce"] and asked["state"] and asked["redirect_uri"] == CALLBACK
    answer = sign_in(client, configured, "ada")
    assert answer.status_code == 302 and answer["Location"] == "/"
    user = User.objects.get(username="ada")
    assert user.role == "admin" and user.oidc_subject == f"{configured.issuer}|ada"
    assert not user.has_usable_password()  # SSO people have no local password
    assert client.get("/users/").status_code == 200
    assert AuditEvent.objects.filter(action="auth.sso_login", target_repr="ada").exists()
    assert AuditEvent.objects.filter(action="auth.login").exists()


def test_the_role_follows_the_groups_and_leaving_them_ends_access(client, configured):
    sign_in(client, configured, "oz")
    oz = User.objects.get(username="oz")
    assert oz.role == "operator"
    from console.actions.users import create_token
    from console.audit import Actor

    token, _secret = create_token(Actor.system(), oz, "oz-script")
    client.logout()
    # promoted at the provider: an admin at the next sign-in
    configured.set_accounts({**ACCOUNTS, "oz": {**ACCOUNTS["oz"],
                                                "groups": ["tanglaw-admins"]}})
    sign_in(client, configured, "oz")
    oz.refresh_from_db()
    assert oz.role == "admin"
    assert AuditEvent.objects.filter(action="user.role_changed", target_repr="oz").exists()
    client.logout()
    # out of every group: refused at the next sign-in, and the account is disabled
    configured.set_accounts({**ACCOUNTS, "oz": {**ACCOUNTS["oz"], "groups": ["everyone"]}})
    refused = sign_in(client, configured, "oz")
    assert refused.status_code == 302 and refused["Location"] == "/login/"
    page = client.get("/login/").content.decode()
    assert "Example IdP signed you in, but you may not use Tanglaw: not in any group" in page
    oz.refresh_from_db()
    assert not oz.is_active
    assert client.get("/").status_code == 302  # not signed in
    event = AuditEvent.objects.get(action="auth.sso_refused")
    assert event.outcome == "denied" and "oz" in event.detail
    # and the API tokens the account made stop working with it
    assert not ApiToken.objects.active().filter(pk=token.pk).exists()


def test_someone_in_no_group_never_gets_an_account(client, configured):
    refused = sign_in(client, configured, "nobody")
    assert refused["Location"] == "/login/"
    assert not User.objects.filter(username="nobody").exists()


def test_a_bad_state_is_refused(client, configured):
    answer = sign_in(client, configured, "ada",
                     tamper_callback=lambda url: _with(url, state="forged-state-value"))
    assert answer.status_code == 302 and answer["Location"] == "/login/"
    assert "Sign-in with Example IdP failed" in client.get("/login/").content.decode()
    assert not User.objects.filter(username="ada").exists()
    assert AuditEvent.objects.get(action="auth.sso_failed").outcome == "failure"


def test_a_bad_nonce_is_refused(client, configured):
    # the provider puts the nonce it was sent into the ID token; this one is not ours
    answer = sign_in(client, configured, "ada",
                     tamper_auth=lambda url: _with(url, nonce="someone-elses-nonce"))
    assert answer["Location"] == "/login/"
    failed = AuditEvent.objects.get(action="auth.sso_failed")
    assert "Nonce" in failed.detail
    assert client.get("/").status_code == 302
    assert not User.objects.filter(username="ada").exists()


def test_the_provider_saying_no_is_a_message_not_an_error(client, configured):
    answer = sign_in(client, configured, None)  # no account picked: access_denied
    assert answer["Location"] == "/login/"
    assert "the provider said" in client.get("/login/").content.decode()


def test_local_passwords_are_for_admins_while_sso_is_on(client, configured,
                                                        operator_user, admin_user):
    from tests.conftest import PASSWORD

    page = client.get("/login/").content.decode()
    assert 'href="/oidc/authenticate/"' in page and "Sign in with Example IdP" in page
    refused = client.post("/login/", {"username": operator_user.username,
                                      "password": PASSWORD})
    assert refused.status_code == 200
    assert "local passwords are for admins only" in refused.content.decode()
    assert client.post("/login/", {"username": admin_user.username,
                                   "password": PASSWORD}).status_code == 302


def test_a_provider_that_is_down_leaves_local_sign_in_working(client, settings, admin_user):
    from tests.conftest import PASSWORD
    from tests.support.llama_server import free_port

    settings.TANGLAW_OIDC_ISSUER = f"http://127.0.0.1:{free_port()}"
    settings.TANGLAW_OIDC_CLIENT_ID = "tanglaw"
    settings.TANGLAW_OIDC_ADMIN_GROUPS = ["admins"]
    settings.AUTHENTICATION_BACKENDS = [*settings.AUTHENTICATION_BACKENDS, "console.sso.Backend"]
    sso._discovery.clear()
    start = client.get("/oidc/authenticate/", follow=True)
    assert "is unavailable: the provider could not be reached" in start.content.decode()
    assert client.post("/login/", {"username": admin_user.username,
                                   "password": PASSWORD}).status_code == 302


def test_without_configuration_there_is_no_sso(client, settings):
    settings.TANGLAW_OIDC_ISSUER = ""
    assert client.get("/oidc/authenticate/").status_code == 404
    assert client.get("/oidc/callback/?code=x&state=y").status_code == 404
    assert "/oidc/authenticate/" not in client.get("/login/").content.decode()


def test_an_account_an_admin_disabled_stays_off(client, configured):
    sign_in(client, configured, "ada")
    client.logout()
    ada = User.objects.get(username="ada")
    ada.is_active = False  # as the Users page does
    ada.save()
    refused = sign_in(client, configured, "ada")
    assert refused["Location"] == "/login/"
    assert "an admin disabled your account in Tanglaw" in client.get("/login/").content.decode()
    ada.refresh_from_db()
    assert not ada.is_active
    assert client.get("/").status_code == 302


def test_made_up_callbacks_write_nothing_to_the_audit_log(client, configured):
    before = AuditEvent.objects.count()
    for query in ("error=access_denied&error_description=call+this+number",
                  "code=x&state=y", "state=only"):
        answer = client.get(f"/oidc/callback/?{query}")
        assert answer.status_code == 302 and answer["Location"] == "/login/"
    page = client.get("/login/").content.decode()
    assert "call this number" not in page and "could not be completed" in page
    assert AuditEvent.objects.count() == before
    # a sign-in form posted to a URL with ?code= does not reach the SSO backend
    assert client.post("/login/?code=x&state=y", {"username": "ada",
                                                   "password": "x"}).status_code == 200
