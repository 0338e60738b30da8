"""MAF declarative agents in the JSON API: export one agent, import one file (gateway.maf)."""

from __future__ import annotations

from typing import Any, Literal

from django.http import HttpResponse
from ninja import Router, Schema, Status

from agents.api import AgentOut
from agents.models import Agent
from console.api import found, need
from console.audit import Actor
from gateway import maf

router = Router(tags=["maf"])


class MafImportIn(Schema):
    yaml: str
    backend_id: int | None = None  # required; None is refused with a 422 naming it
    model: str = ""


class NotImportedOut(Schema):
    path: str
    reason: str


class MafImportOut(Schema):
    dry_run: bool
    name: str
    tools: list[str]
    not_imported: list[NotImportedOut]
    agent: AgentOut | None


def _agent(request, **lookup) -> Agent:
    return found(Agent.objects.for_user(request.user).prefetch_related(
        "tools", "fallbacks", "specialist_links"), "agent", **lookup)


@router.get("/agents/{pk}/maf.yaml", response={200: None})
def export_maf(request, pk: int, api: Literal["chat", "responses"] = "chat"):
    """The agent as a MAF `kind: Prompt` file whose model is `agent/<slug>` on this gateway
    (no secret: the client reads its key from OPENAI_API_KEY)."""
    need(request, "agents.view")
    agent = _agent(request, pk=pk)
    response = HttpResponse(maf.export_yaml(agent, maf.gateway_base_url(request), api),
                            content_type="application/yaml")
    response["Content-Disposition"] = f'attachment; filename="{maf.filename(agent)}"'
    return response


# not /agents/import-maf: agents' /agents/{pk} (any one segment) would take its POST (405)
@router.post("/agents/import/maf", response={200: MafImportOut, 201: MafImportOut, 422: dict})
def import_maf(request, payload: MafImportIn, dry_run: bool = False):
    """Create an agent from a MAF `kind: Prompt` file on the backend and model given here;
    what the file holds that Tanglaw does not import is listed in `not_imported`."""
    need(request, "agents.change")
    if dry_run:
        plan = maf.plan_import(payload.yaml, payload.backend_id, payload.model)
        return Status(200, _out(True, plan.data["name"], [t.name for t in plan.tools],
                                plan.not_imported, None))
    imported = maf.import_agent(Actor.from_request(request), payload.yaml,
                                backend_id=payload.backend_id, model=payload.model)
    agent = _agent(request, pk=imported.agent.pk)
    return Status(201, _out(False, agent.name, [t.name for t in agent.tools.all()],
                            imported.not_imported, agent))


def _out(dry_run: bool, name: str, tools: list[str], not_imported: list[dict[str, str]],
         agent: Agent | None) -> dict[str, Any]:
    return {"dry_run": dry_run, "name": name, "tools": sorted(tools),
            "not_imported": not_imported, "agent": agent}
