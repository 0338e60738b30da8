"""Validation of agents, shared by the pages and the API."""

from __future__ import annotations

from typing import Any

from django import forms

from agents.choices import AgentKind
from agents.models import Agent


class AgentForm(forms.ModelForm):
    temperature = forms.FloatField(min_value=0, max_value=2, initial=0.7)
    max_tokens = forms.IntegerField(min_value=1, max_value=131072, initial=1024)
    first_token_timeout_s = forms.FloatField(min_value=1, max_value=600, initial=60,
                                             label="First-token deadline (s)")
    idle_timeout_s = forms.FloatField(min_value=1, max_value=600, initial=30,
                                      label="Idle gap deadline (s)")
    turn_timeout_s = forms.FloatField(min_value=1, max_value=3600, initial=300,
                                      label="Whole-turn deadline (s)")
    max_tool_iterations = forms.IntegerField(min_value=1, max_value=20, initial=6)
    kind = forms.ChoiceField(choices=AgentKind.choices, required=False,
                             initial=AgentKind.ASSISTANT,
                             help_text="A router asks its model to pick a specialist for each "
                                       "message; the specialist answers.")

    class Meta:
        model = Agent
        widgets = {"description": forms.Textarea(attrs={"rows": 2}),
                   "system_prompt": forms.Textarea(attrs={"rows": 6})}
        fields = ["name", "description", "kind", "system_prompt", "backend", "model",
                  "temperature", "max_tokens", "first_token_timeout_s", "idle_timeout_s",
                  "turn_timeout_s", "max_tool_iterations", "tools", "escalation_backend",
                  "escalation_model", "log_content", "enabled"]
        labels = {"escalation_backend": "Escalation backend",
                  "escalation_model": "Escalation model"}

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Enter a name.")
        return name

    def clean_kind(self):
        return self.cleaned_data.get("kind") or AgentKind.ASSISTANT

    def clean_model(self):
        model = self.cleaned_data["model"].strip()
        if not model:
            raise forms.ValidationError("Enter the model name the backend serves.")
        return model

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        first, turn = data.get("first_token_timeout_s"), data.get("turn_timeout_s")
        if first and turn and first > turn:
            self.add_error("first_token_timeout_s",
                           "The first-token timeout cannot be longer than the whole turn.")
        escalation_model = (data.get("escalation_model") or "").strip()
        data["escalation_model"] = escalation_model
        if data.get("escalation_backend") and not escalation_model:
            self.add_error("escalation_model", "Enter the model to escalate to.")
        if escalation_model and not data.get("escalation_backend"):
            self.add_error("escalation_backend", "Pick the backend to escalate to.")
        return data
