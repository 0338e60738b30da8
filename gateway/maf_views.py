"""Pages for MAF declarative agents: download one agent's file, import one (gateway.maf)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from agents.models import Agent
from console.actions import Invalid
from console.audit import Actor
from console.models import Backend
from console.permissions import get_object_for_user, require
from gateway import maf


@require("agents.view")
def maf_export(request, pk):
    agent = get_object_for_user(request, Agent, pk)
    api = request.GET.get("api", "chat")
    if api not in maf.API_TYPES:
        return HttpResponseBadRequest(f"api: one of {', '.join(maf.API_TYPES)}")
    response = HttpResponse(maf.export_yaml(agent, maf.gateway_base_url(request), api),
                            content_type="application/yaml")
    response["Content-Disposition"] = f'attachment; filename="{maf.filename(agent)}"'
    return response


@require("agents.change")
@require_http_methods(["GET", "POST"])
def maf_import(request):
    """Paste or upload a MAF file and pick the backend and model; Check shows what would be
    imported and what would not, Import creates the agent."""
    values = {"yaml": "", "backend_id": "", "model": ""}
    plan, errors = None, {}
    if request.method == "POST":
        upload = request.FILES.get("file")
        values = {"yaml": upload.read(maf.MAX_BYTES + 1).decode("utf-8", "replace") if upload
                  else request.POST.get("yaml", ""),
                  "backend_id": request.POST.get("backend", ""),
                  "model": request.POST.get("model", "")}
        try:
            if request.POST.get("action") == "import":
                imported = maf.import_agent(Actor.from_request(request), values["yaml"],
                                            backend_id=values["backend_id"],
                                            model=values["model"])
                messages.success(request, f"Imported {imported.agent.name} from the MAF file.")
                if imported.not_imported:
                    messages.warning(request, "Not imported: " + "; ".join(
                        f"{s['path']} ({s['reason']})" for s in imported.not_imported))
                return redirect("agent_detail", pk=imported.agent.pk)
            plan = maf.plan_import(values["yaml"], values["backend_id"], values["model"])
        except Invalid as exc:
            errors = exc.errors
    return render(request, "gateway/maf_import.html", {
        "values": values, "plan": plan, "errors": errors,
        "backends": Backend.objects.order_by("name")})
