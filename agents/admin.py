from django.contrib import admin

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
from console.admin import ReadOnlyAdmin as ReadOnly


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

    def has_change_permission(self, request, obj=None):
        return False  # changes go through the agent actions (versioned and audited)


@admin.register(AgentVersion)
class AgentVersionAdmin(admin.ModelAdmin):
    list_display = ["agent", "version", "created_by", "created_at"]
    list_filter = ["agent"]


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["id", "title", "owner", "agent", "updated_at"]
    list_filter = ["agent"]
    search_fields = ["title", "owner__username"]

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ["id", "agent", "backend", "model", "started_at", "ttft_ms",
                    "tokens_per_s", "total_ms", "outcome"]
    list_filter = ["outcome", "backend", "agent"]
    date_hierarchy = "started_at"


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["id", "conversation", "role", "incomplete", "created_at"]
    list_filter = ["role", "incomplete"]


@admin.register(ToolCall)
class ToolCallAdmin(admin.ModelAdmin):
    list_display = ["id", "run", "name", "ok", "ms", "approved_by"]
    list_filter = ["name", "ok"]
