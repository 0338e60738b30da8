"""Agents in the Django admin: history (versions, conversations, runs, messages, tool
calls) is read-only; deleting an agent goes through the audited action."""

from django.contrib import admin, messages

from agents import actions
from agents.models import (
    Agent,
    AgentVersion,
    Conversation,
    McpServer,
    Message,
    Run,
    Tool,
    ToolCall,
)
from console.actions import Refused
from console.admin import ReadOnlyAdmin as ReadOnly
from console.audit import Actor


@admin.register(McpServer)
class McpServerAdmin(ReadOnly):
    list_display = ["name", "transport", "url", "command", "enabled", "last_listed_at"]
    list_filter = ["transport", "enabled"]
    exclude = ["secret_headers"]  # write-only: only the names are shown


@admin.register(Tool)
class ToolAdmin(ReadOnly):
    list_display = ["name", "kind", "server", "requires_approval", "timeout_s", "enabled"]
    list_filter = ["kind", "requires_approval", "enabled"]
    search_fields = ["name", "description"]
    exclude = ["secret_headers"]  # write-only: only the names are shown


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "backend", "model", "enabled", "version", "updated_at"]
    list_filter = ["kind", "enabled", "backend"]
    search_fields = ["name", "description", "model"]

    def has_add_permission(self, request):
        return False  # on the Agents page: validated, versioned and audited

    def has_change_permission(self, request, obj=None):
        return False  # likewise

    def delete_model(self, request, obj):
        self.delete_queryset(request, Agent.objects.filter(pk=obj.pk))

    def delete_queryset(self, request, queryset):
        actor = Actor.from_request(request)
        for agent in queryset:
            try:
                actions.delete_agent(actor, agent)
            except Refused as exc:
                self.message_user(request, str(exc), messages.ERROR)

    def get_deleted_objects(self, objs, request):
        # the action deletes an agent's versions with it, though nobody may delete a
        # version on its own here; a specialist of a router is still refused (protected)
        deleted, counts, _perms_needed, protected = super().get_deleted_objects(objs, request)
        return deleted, counts, set(), protected


@admin.register(AgentVersion)
class AgentVersionAdmin(ReadOnly):
    list_display = ["agent", "version", "created_by", "created_at"]
    list_filter = ["agent"]


@admin.register(Conversation)
class ConversationAdmin(ReadOnly):
    list_display = ["id", "title", "owner", "agent", "updated_at"]
    list_filter = ["agent"]
    search_fields = ["title", "owner__username"]


@admin.register(Run)
class RunAdmin(ReadOnly):
    list_display = ["id", "agent", "backend", "model", "started_at", "ttft_ms",
                    "tokens_per_s", "total_ms", "outcome"]
    list_filter = ["outcome", "backend", "agent"]
    date_hierarchy = "started_at"


@admin.register(Message)
class MessageAdmin(ReadOnly):
    list_display = ["id", "conversation", "role", "incomplete", "created_at"]
    list_filter = ["role", "incomplete"]


@admin.register(ToolCall)
class ToolCallAdmin(ReadOnly):
    list_display = ["id", "run", "name", "ok", "ms", "approved_by"]
    list_filter = ["name", "ok"]
