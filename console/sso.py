"""Sign-in with the organisation's identity provider: OpenID Connect, the authorization
code flow with PKCE (S256) and a nonce, through mozilla-django-oidc.

Configured by environment variables (console.settings): the issuer, the client id and
secret, and which groups (a claim, `groups` by default) make an admin, an operator or
a viewer. The provider's endpoints come from its discovery document
(`/.well-known/openid-configuration`), fetched on the first sign-in, not at start-up, so
the console starts without the provider reachable.

A person is matched by the issuer and their `sub`, never by email (an email can belong
to a local account). Their role is set from their groups at every sign-in; someone in
none of the mapped groups is refused, and an account SSO made is disabled then, with
its API tokens: removed from the group, they lose access at the next sign-in. Every SSO
sign-in, refusal and failure is audited. With SSO on, local passwords are for admins
only (TANGLAW_OIDC_LOCAL_LOGIN=all keeps them for everyone).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import httpx
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.exceptions import SuspiciousOperation
from django.db import transaction
from django.http import Http404, HttpResponseRedirect
from django.urls import reverse
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.utils import import_from_settings
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from console import audit
from console.audit import Actor
from console.choices import AuditAction, Outcome, Role

log = logging.getLogger("tanglaw.sso")

# mozilla-django-oidc setting → the discovery document's field
DISCOVERED = {"OIDC_OP_AUTHORIZATION_ENDPOINT": "authorization_endpoint",
              "OIDC_OP_TOKEN_ENDPOINT": "token_endpoint",
              "OIDC_OP_USER_ENDPOINT": "userinfo_endpoint",
              "OIDC_OP_JWKS_ENDPOINT": "jwks_uri"}
DISCOVERY_TTL_S = 3600
_discovery: dict[str, Any] = {}
_lock = threading.Lock()


class NotConfigured(Exception):
    """The provider could not be asked (down, or not an OpenID provider)."""


def enabled() -> bool:
    return bool(settings.TANGLAW_OIDC_ISSUER and settings.TANGLAW_OIDC_CLIENT_ID)


def discovery() -> dict[str, Any]:
    """The provider's discovery document (cached an hour per process)."""
    with _lock:
        if _discovery and time.monotonic() - _discovery["at"] < DISCOVERY_TTL_S:
            return _discovery["doc"]
    issuer = settings.TANGLAW_OIDC_ISSUER.rstrip("/")
    url = f"{issuer}/.well-known/openid-configuration"
    try:
        response = httpx.get(url, timeout=10, trust_env=False, follow_redirects=False)
        doc = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError) as exc:
        raise NotConfigured(f"{url} could not be read: {exc}") from None
    if not isinstance(doc, dict) or any(not isinstance(doc.get(f), str)
                                        for f in DISCOVERED.values()):
        raise NotConfigured(f"{url} is not an OpenID provider's discovery document")
    if doc.get("issuer", "").rstrip("/") != issuer:
        raise NotConfigured(f"the provider says its issuer is {doc.get('issuer')!r}, not "
                            f"{issuer!r} (TANGLAW_OIDC_ISSUER)")
    with _lock:
        _discovery.update(doc=doc, at=time.monotonic())
    return doc


def get_setting(attr: str, *default: Any) -> Any:
    """mozilla-django-oidc's settings, the provider's endpoints from its discovery."""
    if attr in DISCOVERED:
        return discovery()[DISCOVERED[attr]]
    return import_from_settings(attr, *default)


def role_for(claims: dict[str, Any]) -> str | None:
    """The highest role the person's groups map to, or None (no mapped group)."""
    value = claims.get(settings.TANGLAW_OIDC_ROLES_CLAIM)
    groups = {value} if isinstance(value, str) else {
        str(g) for g in value} if isinstance(value, list) else set()
    for role, mapped in ((Role.ADMIN, settings.TANGLAW_OIDC_ADMIN_GROUPS),
                         (Role.OPERATOR, settings.TANGLAW_OIDC_OPERATOR_GROUPS),
                         (Role.VIEWER, settings.TANGLAW_OIDC_VIEWER_GROUPS)):
        if groups & set(mapped):
            return role
    return None


def subject(claims: dict[str, Any]) -> str:
    return f"{settings.TANGLAW_OIDC_ISSUER.rstrip('/')}|{claims.get('sub', '')}"


class Backend(OIDCAuthenticationBackend):
    """Users by issuer and `sub`; their role from their groups at each sign-in."""

    get_settings = staticmethod(get_setting)

    def __init__(self, *args, **kwargs):
        # nothing read here: Django makes every backend for every sign-in, local
        # passwords included, and those must work while the provider is down
        self.UserModel = get_user_model()
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID
        self.OIDC_RP_CLIENT_SECRET = settings.OIDC_RP_CLIENT_SECRET
        self.OIDC_RP_SIGN_ALGO = settings.OIDC_RP_SIGN_ALGO
        self.OIDC_RP_IDP_SIGN_KEY = None

    @property
    def OIDC_OP_TOKEN_ENDPOINT(self):  # noqa: N802 - the library's attribute names
        return get_setting("OIDC_OP_TOKEN_ENDPOINT")

    @property
    def OIDC_OP_USER_ENDPOINT(self):  # noqa: N802
        return get_setting("OIDC_OP_USER_ENDPOINT")

    @property
    def OIDC_OP_JWKS_ENDPOINT(self):  # noqa: N802
        return get_setting("OIDC_OP_JWKS_ENDPOINT")

    def authenticate(self, request, **kwargs):
        # only from the callback (which passes the nonce it kept): never for a sign-in
        # form or any other authenticate() call on a URL that happens to carry ?code=
        if not enabled() or request is None or "nonce" not in kwargs:
            return None
        return super().authenticate(request, **kwargs)

    def verify_token(self, token, **kwargs):
        """The library checks the signature and the nonce; the issuer and the audience
        are checked here (OIDC Core 3.1.3.7)."""
        payload = super().verify_token(token, **kwargs)
        issuer = str(discovery().get("issuer", "")).rstrip("/")
        audience = payload.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if str(payload.get("iss", "")).rstrip("/") != issuer:
            raise SuspiciousOperation("the ID token was issued by someone else")
        if settings.OIDC_RP_CLIENT_ID not in audiences:
            raise SuspiciousOperation("the ID token is not for this console")
        return payload

    def get_userinfo(self, access_token, id_token, payload):
        """The userinfo claims, about the person of the ID token (OIDC Core 5.3.2); the
        groups from the ID token when the userinfo endpoint has none."""
        info = super().get_userinfo(access_token, id_token, payload)
        if info.get("sub") != payload.get("sub"):
            raise SuspiciousOperation("the userinfo is about someone else than the ID token")
        claim = settings.TANGLAW_OIDC_ROLES_CLAIM
        if claim not in info and claim in payload:
            info[claim] = payload[claim]
        return info

    def filter_users_by_claims(self, claims):
        return self.UserModel.objects.filter(oidc_subject=subject(claims))

    def verify_claims(self, claims) -> bool:
        if not claims.get("sub"):
            self._refuse(claims, "the provider sent no subject (sub)")
            return False
        if role_for(claims) is None:
            groups = ", ".join(sorted({*settings.TANGLAW_OIDC_ADMIN_GROUPS,
                                       *settings.TANGLAW_OIDC_OPERATOR_GROUPS,
                                       *settings.TANGLAW_OIDC_VIEWER_GROUPS}))
            self._refuse(claims, f"not in any group that may sign in ({groups})")
            return False
        return True

    def _refuse(self, claims: dict[str, Any], why: str) -> None:
        existing = self.UserModel.objects.filter(oidc_subject=subject(claims)).first()
        with transaction.atomic():
            if existing is not None and existing.is_active:
                # out of the groups: the account SSO made (and its API tokens) stops working
                existing.is_active, existing.sso_suspended = False, True
                existing.save(update_fields=["is_active", "sso_suspended"])
            audit.record(AuditAction.AUTH_SSO_REFUSED, Actor.from_request(self.request),
                         target=existing, outcome=Outcome.DENIED,
                         detail=f"{_who(claims)}: {why}")
        self.request.sso_refusal = why

    def create_user(self, claims):
        User = get_user_model()
        base = (str(claims.get("preferred_username") or "")
                or str(claims.get("email") or "").split("@")[0] or "sso-user")[:140]
        username, n = base, 2
        while User.objects.filter(username__iexact=username).exists():
            username, n = f"{base}-{n}", n + 1
        with transaction.atomic():
            user = User(username=username, email=str(claims.get("email") or "")[:254],
                        role=role_for(claims) or Role.VIEWER, oidc_subject=subject(claims))
            user.set_unusable_password()  # they sign in through the provider only
            user.save()
            audit.record(AuditAction.USER_CREATED, Actor.from_request(self.request),
                         target=user, after={"username": username, "role": user.role,
                                             "by": "sso"})
        return user

    def update_user(self, user, claims):
        if not user.is_active and not user.sso_suspended:
            # an admin turned this account off: the provider cannot turn it on again
            with transaction.atomic():
                audit.record(AuditAction.AUTH_SSO_REFUSED, Actor.from_request(self.request),
                             target=user, outcome=Outcome.DENIED,
                             detail=f"{_who(claims)}: the account is disabled in Tanglaw")
            self.request.sso_refusal = "an admin disabled your account in Tanglaw"
            return user  # inactive: the callback does not sign them in
        role = role_for(claims) or Role.VIEWER  # verify_claims refused anyone without one
        changes: dict[str, tuple[Any, Any]] = {}
        if user.role != role:
            changes["role"] = (user.role, role)
        if not user.is_active:
            changes["is_active"] = (False, True)
        email = str(claims.get("email") or "")[:254]
        with transaction.atomic():
            user.role, user.is_active, user.sso_suspended = role, True, False
            if email:
                user.email = email
            user.save(update_fields=["role", "is_active", "sso_suspended", "email"])
            if changes:
                audit.record(AuditAction.USER_ROLE_CHANGED, Actor.from_request(self.request),
                             target=user, before={k: v[0] for k, v in changes.items()},
                             after={k: v[1] for k, v in changes.items()},
                             detail="from the identity provider's groups")
        return user


def _who(claims: dict[str, Any]) -> str:
    return str(claims.get("preferred_username") or claims.get("email")
               or claims.get("sub") or "someone")[:150]


class Start(OIDCAuthenticationRequestView):
    """/oidc/authenticate/: off to the provider, with state, nonce and a PKCE challenge."""

    get_settings = staticmethod(get_setting)

    def __init__(self, *args, **kwargs):
        # the endpoints are read per request (discovery), not when the view is made
        super(OIDCAuthenticationRequestView, self).__init__(*args, **kwargs)

    def get(self, request):
        if not enabled():
            raise Http404("single sign-on is not configured")
        try:
            self.OIDC_OP_AUTH_ENDPOINT = get_setting("OIDC_OP_AUTHORIZATION_ENDPOINT")
        except NotConfigured as exc:
            log.warning("single sign-on unavailable: %s", exc)
            messages.error(request, f"Sign-in with {settings.TANGLAW_OIDC_NAME} is "
                                    f"unavailable: the provider could not be reached.")
            return HttpResponseRedirect(reverse("login"))
        self.OIDC_RP_CLIENT_ID = get_setting("OIDC_RP_CLIENT_ID")
        return super().get(request)


class Callback(OIDCAuthenticationCallbackView):
    """/oidc/callback/: the code for tokens, the ID token checked (signature, nonce),
    the person signed in with the role their groups give; any failure is a message on
    the sign-in page and an audit event, never a 500."""

    get_settings = staticmethod(get_setting)

    def get(self, request):
        if not enabled():
            raise Http404("single sign-on is not configured")
        # whether this browser started a sign-in, and whether this answer is for it:
        # only then is a failure audited and the provider's words shown (anyone can
        # call this URL with made-up parameters)
        states = request.session.get("oidc_states") or {}
        self.pending = bool(states)
        self.ours = request.GET.get("state", "") in states
        try:
            return super().get(request)
        except SuspiciousOperation as exc:
            return self._failed(f"the answer did not match this sign-in ({exc})")
        except (NotConfigured, httpx.HTTPError, OSError) as exc:
            return self._failed(f"the provider could not be reached ({exc})")
        except Exception as exc:  # noqa: BLE001 - the provider's token endpoint said no
            return self._failed(f"{type(exc).__name__}: {exc}"[:300])

    def login_success(self):
        response = super().login_success()
        audit.record(AuditAction.AUTH_SSO_LOGIN, Actor.from_request(self.request, self.user),
                     target=self.user, after={"issuer": settings.TANGLAW_OIDC_ISSUER,
                                              "role": self.user.role})
        return response

    def login_failure(self):
        refusal = getattr(self.request, "sso_refusal", "")
        if refusal:
            messages.error(self.request, f"{settings.TANGLAW_OIDC_NAME} signed you in, but "
                                         f"you may not use Tanglaw: {refusal}.")
            return HttpResponseRedirect(reverse("login"))
        error = self.request.GET.get("error_description") or self.request.GET.get("error")
        if error and self.ours:
            return self._failed(f"the provider said: {error[:200]}")
        return self._failed("the sign-in could not be completed")

    def _failed(self, why: str):
        if getattr(self, "pending", False):
            audit.record(AuditAction.AUTH_SSO_FAILED, Actor.from_request(self.request),
                         outcome=Outcome.FAILURE, detail=why[:500])
            messages.error(self.request, f"Sign-in with {settings.TANGLAW_OIDC_NAME} failed: "
                                         f"{why}. Try again.")
        else:  # no sign-in of this browser was under way: nothing to record or explain
            messages.error(self.request, f"Sign-in with {settings.TANGLAW_OIDC_NAME} could "
                                         f"not be completed. Try again.")
        return HttpResponseRedirect(reverse("login"))
