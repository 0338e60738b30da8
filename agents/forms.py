"""Validation of agents, shared by the pages and the API."""

from __future__ import annotations

from django import forms

from agents.models import Agent, Tool


class ToolSettingsForm(forms.ModelForm):
    timeout_s = forms.FloatField(min_value=0.1, max_value=600, label="Timeout (s)")

    class Meta:
        model = Tool
        fields = ["requires_approval", "timeout_s", "enabled"]


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

    class Meta:
        model = Agent
        widgets = {"description": forms.Textarea(attrs={"rows": 2}),
                   "system_prompt": forms.Textarea(attrs={"rows": 6})}
        # `kind` (router) joins with routing; every agent is an assistant until then
        fields = ["name", "description", "system_prompt", "backend", "model",
                  "temperature", "max_tokens", "first_token_timeout_s", "idle_timeout_s",
                  "turn_timeout_s", "max_tool_iterations", "tools", "log_content", "enabled"]

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Enter a name.")
        return name

    def clean_model(self):
        model = self.cleaned_data["model"].strip()
        if not model:
            raise forms.ValidationError("Enter the model name the backend serves.")
        return model

    def clean(self):
        data = super().clean()
        first, turn = data.get("first_token_timeout_s"), data.get("turn_timeout_s")
        if first and turn and first > turn:
            self.add_error("first_token_timeout_s",
                           "The first-token timeout cannot be longer than the whole turn.")
        return data
