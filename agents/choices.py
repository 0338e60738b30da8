"""Choices for agents, tools and runs."""

from django.db import models


class AgentKind(models.TextChoices):
    ASSISTANT = "assistant", "Assistant"
    ROUTER = "router", "Router"


class ToolKind(models.TextChoices):
    BUILTIN = "builtin", "Built-in"
    HTTP = "http", "HTTP"
    MCP = "mcp", "MCP server"


class McpTransport(models.TextChoices):
    HTTP = "http", "Streamable HTTP"
    STDIO = "stdio", "stdio (admins only)"


class MessageRole(models.TextChoices):
    USER = "user", "User"
    ASSISTANT = "assistant", "Assistant"
    TOOL = "tool", "Tool"


class RunOutcome(models.TextChoices):
    SUCCESS = "success", "Completed"
    INCOMPLETE = "incomplete", "Incomplete"
    ERROR = "error", "Failed"
    CANCELLED = "cancelled", "Stopped"


class ApprovalStatus(models.TextChoices):
    PENDING = "pending", "Waiting"
    APPROVED = "approved", "Approved"
    DENIED = "denied", "Denied"
    EXPIRED = "expired", "Expired"
    CANCELLED = "cancelled", "Turn ended"
