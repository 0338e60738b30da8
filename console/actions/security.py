"""Audit events for sign-in, sign-out and refused requests."""

from __future__ import annotations

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from console import audit
from console.audit import Actor
from console.choices import AuditAction, Outcome
from console.ws import revoke_sockets


def record_denied(request, perm: str) -> None:
    audit.record(AuditAction.PERMISSION_DENIED, Actor.from_request(request),
                 outcome=Outcome.DENIED,
                 detail=f"{request.method} {request.path[:200]} needs {perm}")


@receiver(user_logged_in)
def _logged_in(sender, request, user, **kwargs):
    audit.record(AuditAction.AUTH_LOGIN, Actor.from_request(request, user), target=user)


@receiver(user_logged_out)
def _logged_out(sender, request, user, **kwargs):
    if user is not None:
        audit.record(AuditAction.AUTH_LOGOUT, Actor.from_request(request, user), target=user)
        revoke_sockets(user.pk, "you signed out")


@receiver(user_login_failed)
def _login_failed(sender, credentials, request=None, **kwargs):
    # the username tried is recorded (not whether it exists); never the password
    username = str(credentials.get("username", ""))[:150]
    actor = Actor.from_request(request) if request is not None else Actor.system()
    audit.record(AuditAction.AUTH_LOGIN_FAILED, actor, outcome=Outcome.FAILURE,
                 detail=f"failed sign-in as {username!r}")
