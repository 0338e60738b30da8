"""Users, roles and API tokens."""

from __future__ import annotations

import secrets

from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from console import audit
from console.actions import Invalid, Refused
from console.audit import Actor
from console.choices import AuditAction, Role
from console.models import ApiToken, User
from console.ws import revoke_sockets


def generate_password() -> str:
    return secrets.token_urlsafe(12)


def create_user(actor: Actor, username: str, role: str, *, email: str = "",
                password: str | None = None) -> tuple[User, str | None]:
    """Create a user. Without a password, a one-time one is generated and returned."""
    generated = None
    if password is None:
        password = generated = generate_password()
    with transaction.atomic():
        user = User(username=username, email=email, role=role,
                    must_change_password=generated is not None)
        _sync_staff(user)
        user.set_password(password)
        user.save()
        audit.record(AuditAction.USER_CREATED, actor, target=user,
                     after={"username": username, "role": role, "email": email})
    return user, generated


def _sync_staff(user) -> None:
    # admins browse the Django admin; nobody else gets staff rights
    user.is_staff = user.is_superuser = user.role == Role.ADMIN


def _other_active_admins(user) -> bool:
    return User.objects.filter(is_active=True, role=Role.ADMIN).exclude(pk=user.pk).exists()


def change_role(actor: Actor, user, role: str) -> None:
    if role not in Role.values:
        raise Refused(f"unknown role {role!r}")
    if user.role == role:
        return
    if user.role == Role.ADMIN and not _other_active_admins(user):
        raise Refused("this is the last active admin; make someone else admin first")
    with transaction.atomic():
        before = user.role
        user.role = role
        _sync_staff(user)
        user.save(update_fields=["role", "is_staff", "is_superuser"])
        audit.record(AuditAction.USER_ROLE_CHANGED, actor, target=user,
                     before={"role": before}, after={"role": role})
        revoke_sockets(user.pk, f"your role changed to {role}: reconnect", code=4403)


def check_active(user, active: bool) -> None:
    """Raise Refused where `set_active` would; forms call it to show the reason."""
    if not active and user.is_active and user.role == Role.ADMIN and \
            not _other_active_admins(user):
        raise Refused("this is the last active admin; it cannot be deactivated")


def set_active(actor: Actor, user, active: bool) -> None:
    if user.is_active == active:
        return
    check_active(user, active)
    with transaction.atomic():
        user.is_active = active
        user.save(update_fields=["is_active"])
        if not active:
            revoke_sockets(user.pk, "your account was deactivated")
        audit.record(AuditAction.USER_ACTIVATED if active else AuditAction.USER_DEACTIVATED,
                     actor, target=user)


def create_token(actor: Actor, user, name: str) -> tuple[ApiToken, str]:
    """Create an API token; the raw value is returned once and never stored."""
    raw = ApiToken.generate()
    with transaction.atomic():
        token = ApiToken.objects.create(user=user, name=name.strip()[:100] or "token",
                                        digest=ApiToken.digest_of(raw), hint=raw[:8])
        audit.record(AuditAction.TOKEN_CREATED, actor, target=token,
                     after={"name": token.name, "user": user.username, "hint": token.hint})
    return token, raw


def revoke_token(actor: Actor, token: ApiToken) -> None:
    if token.revoked_at:
        return
    with transaction.atomic():
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit.record(AuditAction.TOKEN_REVOKED, actor, target=token,
                     after={"name": token.name, "user": token.user.username})


def user_for_token(raw: str, scope: str = "api"):
    """The active user a live (not revoked, not expired) bearer token belongs to, when the
    token has `scope`; else None."""
    if not raw.startswith(ApiToken.PREFIX):
        return None
    token = (ApiToken.objects.active().select_related("user")
             .filter(digest=ApiToken.digest_of(raw)).first())
    if token is None or not token.allows_scope(scope):
        return None
    now = timezone.now()
    if not token.last_used_at or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user


def set_password(actor: Actor, user, password: str | None) -> None:
    """An admin sets a user's password in the Django admin (None: password sign-in off).
    The user's sessions end with the old password's hash; their open sockets close now."""
    if password is not None:
        try:  # the same rules as the password-change page, whoever sets it
            password_validation.validate_password(password, user)
        except ValidationError as exc:
            raise Invalid({"password": list(exc.messages)}) from None
    with transaction.atomic():
        if password is None:
            user.set_unusable_password()
        else:
            user.set_password(password)
        user.save(update_fields=["password"])
        audit.record(AuditAction.AUTH_PASSWORD_CHANGED, actor, target=user,
                     after={"password_sign_in": password is not None})
        revoke_sockets(user.pk, "the password changed: sign in again")


def password_changed(actor: Actor, user) -> None:
    """The user chose a new password: the one-time password no longer applies."""
    with transaction.atomic():
        if user.must_change_password:
            user.must_change_password = False
            user.save(update_fields=["must_change_password"])
        audit.record(AuditAction.AUTH_PASSWORD_CHANGED, actor, target=user)
        revoke_sockets(user.pk, "the password changed: sign in again")
