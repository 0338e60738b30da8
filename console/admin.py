from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

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


@admin.register(User)
class TanglawUserAdmin(UserAdmin):
    list_display = ["username", "email", "role", "is_active", "last_login", "date_joined"]
    list_filter = ["role", "is_active"]
    search_fields = ["username", "email"]
    fieldsets = [*(UserAdmin.fieldsets or ()),
                 ("Tanglaw", {"fields": ["role", "must_change_password"]})]

    def get_readonly_fields(self, request, obj=None):
        # roles change through the Users page so the change is audited
        return ["role", "is_superuser", "is_staff", "user_permissions", "groups"]


@admin.register(Backend)
class BackendAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "base_url", "enabled", "status", "latency_ms",
                    "last_checked_at", "api_key_last4"]
    list_filter = ["kind", "enabled", "status"]
    search_fields = ["name", "base_url", "notes"]
    exclude = ["api_key"]  # write-only: never shown, not even here
    readonly_fields = ["api_key_last4", "status", "status_reason", "version", "latency_ms",
                       "model_count", "last_checked_at", "created_at", "updated_at"]

    def has_change_permission(self, request, obj=None):
        return False  # changes go through the Backends pages (validated and audited)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(BackendStatusChange)
class BackendStatusChangeAdmin(admin.ModelAdmin):
    list_display = ["ts", "backend", "previous", "status", "reason", "latency_ms"]
    list_filter = ["status", "backend"]
    search_fields = ["reason", "backend__name"]
    date_hierarchy = "ts"

    def has_change_permission(self, request, obj=None):
        return False

    def has_add_permission(self, request):
        return False


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "hint", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["name", "user__username"]
    exclude = ["digest"]

    def has_change_permission(self, request, obj=None):
        return False

    def has_add_permission(self, request):
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["seq", "ts", "actor", "role", "action", "target_type", "target_id",
                    "outcome", "ip"]
    list_filter = ["action", "outcome", "role"]
    search_fields = ["actor", "target_repr", "detail", "correlation_id"]
    date_hierarchy = "ts"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyAdmin(admin.ModelAdmin):
    """Browse only: changes go through the actions (validated and audited)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


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
