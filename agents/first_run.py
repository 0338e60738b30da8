"""The agents' steps of the overview's first-run checklist (console.first_run)."""

from __future__ import annotations

from django.urls import reverse

from agents.models import Agent
from console.first_run import Step


def steps(request) -> list[Step]:
    agents = Agent.objects.filter(quick=False)
    with_tools = agents.filter(tools__isnull=False).exists()
    return [
        Step("Create an agent", agents.exists(), reverse("agent_list") if agents.exists()
             else reverse("agent_create"), "Agents" if agents.exists() else "New agent",
             "a system prompt on a model, with limits and fallbacks"),
        Step("Give an agent a tool", with_tools, reverse("tool_list"), "Tools",
             "built-in, HTTP or MCP tools it may call"),
    ]
