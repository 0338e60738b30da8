"""The Django admin: browse everything; history is read-only, and every other write goes
through the same audited actions as the UI and the API."""

from __future__ import annotations

from contextvars import ContextVar

from axes import admin as axes_admin
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import AdminPasswordChangeForm, UserChangeForm
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError

from console.actions import Refused
from console.actions import users as user_actions
from console.audit import Actor
from console.models import (
    ApiToken,
    AuditEvent,
    Backend,
    BackendStatusChange,
    DeploymentPlan,
    Job,
    ModelRole,
    SiteSetting,
    User,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Browse only: changes go through the actions (validated and audited)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


# Django's password view builds and saves its form itself, with no say in who the form
# acts for; the view sets this for its duration so the save is audited as that admin
_password_actor: ContextVar[Actor | None] = ContextVar("password_actor", default=None)


class AuditedPasswordForm(AdminPasswordChangeForm):
    """The admin's set-password form, saved through `users.set_password`."""

    def save(self, commit=True):
        actor = _password_actor.get()
        if actor is None:
            raise RuntimeError("AuditedPasswordForm saves only inside the admin's view")
        password = self.cleaned_data["password1"] if self.cleaned_data[
            "set_usable_password"] else None
        user_actions.set_password(actor, self.user, password)
        return self.user


class ActiveOnlyUserForm(UserChangeForm):
    """Only is_active is editable; the last active admin stays, as on the Users page."""

    def clean_is_active(self):
        active = self.cleaned_data["is_active"]
        try:
            user_actions.check_active(self.instance, active)
        except Refused as exc:
            raise ValidationError(str(exc)) from None
        return active


@admin.register(User)
class TanglawUserAdmin(UserAdmin):
    list_display = ["username", "email", "role", "is_active", "last_login", "date_joined"]
    list_filter = ["role", "is_active"]
    search_fields = ["username", "email"]
    fieldsets = [*(UserAdmin.fieldsets or ()),
                 ("Tanglaw", {"fields": ["role", "must_change_password"]})]
    form = ActiveOnlyUserForm
    change_password_form = AuditedPasswordForm
    # everything but is_active and the password (its own audited form): there is no
    # action to change them, and roles change on the Users page
    readonly_fields = ["username", "first_name", "last_name", "email", "is_staff",
                       "is_superuser", "groups", "user_permissions", "last_login",
                       "date_joined", "role", "must_change_password"]

    def has_add_permission(self, request):
        return False  # on the Users page: it asks for the role, shows a one-time password

    def has_delete_permission(self, request, obj=None):
        return False  # deactivate instead; the audit log keeps naming the user

    def save_model(self, request, obj, form, change):
        if "is_active" not in form.changed_data:
            return
        try:
            user_actions.set_active(Actor.from_request(request), User.objects.get(pk=obj.pk),
                                    form.cleaned_data["is_active"])
        except Refused as exc:  # another admin was deactivated since the form was checked
            self.message_user(request, str(exc), messages.ERROR)

    def user_change_password(self, request, id, form_url=""):
        token = _password_actor.set(Actor.from_request(request))
        try:
            return super().user_change_password(request, id, form_url)
        finally:
            _password_actor.reset(token)


@admin.register(Backend)
class BackendAdmin(ReadOnlyAdmin):  # changes go through the Backends pages
    list_display = ["name", "kind", "base_url", "enabled", "status", "latency_ms",
                    "last_checked_at", "api_key_last4"]
    list_filter = ["kind", "enabled", "status"]
    search_fields = ["name", "base_url", "notes"]
    exclude = ["api_key"]  # write-only: never shown, not even here
    readonly_fields = ["api_key_last4", "status", "status_reason", "version", "latency_ms",
                       "model_count", "last_checked_at", "created_at", "updated_at"]


@admin.register(BackendStatusChange)
class BackendStatusChangeAdmin(ReadOnlyAdmin):
    list_display = ["ts", "backend", "previous", "status", "reason", "latency_ms"]
    list_filter = ["status", "backend"]
    search_fields = ["reason", "backend__name"]
    date_hierarchy = "ts"


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    list_display = ["name", "user", "hint", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["name", "user__username"]
    exclude = ["digest"]
    actions = ["revoke_tokens"]

    @admin.action(description="Revoke the selected tokens")
    def revoke_tokens(self, request, queryset):
        actor = Actor.from_request(request)
        for token in queryset.select_related("user"):
            user_actions.revoke_token(actor, token)


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["seq", "ts", "actor", "role", "action", "target_type", "target_id",
                    "outcome", "ip"]
    list_filter = ["action", "outcome", "role"]
    search_fields = ["actor", "target_repr", "detail", "correlation_id"]
    date_hierarchy = "ts"


@admin.register(Job)
class JobAdmin(ReadOnlyAdmin):
    list_display = ["id", "kind", "backend", "model", "state", "percent", "created_by",
                    "created_at", "finished_at"]
    list_filter = ["state", "kind", "backend"]


@admin.register(DeploymentPlan)
class DeploymentPlanAdmin(ReadOnlyAdmin):
    list_display = ["name", "model", "scenario", "fits", "backend", "created_by"]
    list_filter = ["scenario", "fits"]


@admin.register(ModelRole)
class ModelRoleAdmin(ReadOnlyAdmin):
    list_display = ["backend", "model", "role", "tasks"]
    list_filter = ["role", "backend"]


@admin.register(SiteSetting)
class SiteSettingAdmin(ReadOnlyAdmin):
    list_display = ["key", "value"]


# roles, not groups, decide what a user may do: editing groups here would change nothing
if admin.site.is_registered(Group):
    admin.site.unregister(Group)


# sign-in attempts are history; deleting one would lift a lockout unaudited (it lifts by
# itself after TANGLAW_LOGIN_COOLOFF_MINUTES)
class AccessAttemptAdmin(ReadOnlyAdmin, axes_admin.AccessAttemptAdmin):
    actions = []


class AccessLogAdmin(ReadOnlyAdmin, axes_admin.AccessLogAdmin):
    pass


class AccessFailureLogAdmin(ReadOnlyAdmin, axes_admin.AccessFailureLogAdmin):
    pass


for _model, _admin in [(AccessAttempt, AccessAttemptAdmin), (AccessLog, AccessLogAdmin),
                       (AccessFailureLog, AccessFailureLogAdmin)]:
    if admin.site.is_registered(_model):  # axes registers them unless AXES_ENABLE_ADMIN=False
        admin.site.unregister(_model)
        admin.site.register(_model, _admin)
