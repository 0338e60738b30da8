"""Choices for agents, tools and runs."""

from django.db import models


class AgentKind(models.TextChoices):
    ASSISTANT = "assistant", "Assistant"
    ROUTER = "router", "Router"


class ToolKind(models.TextChoices):
    BUILTIN = "builtin", "Built-in"
    HTTP = "http", "HTTP"
    MCP = "mcp", "MCP server"


class MessageRole(models.TextChoices):
    USER = "user", "User"
    ASSISTANT = "assistant", "Assistant"
    TOOL = "tool", "Tool"


class RunOutcome(models.TextChoices):
    SUCCESS = "success", "Completed"
    INCOMPLETE = "incomplete", "Incomplete"
    ERROR = "error", "Failed"
    CANCELLED = "cancelled", "Stopped"
