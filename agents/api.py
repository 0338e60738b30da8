"""Agents, tools, conversations and chat in the JSON API (mounted on console's /api/)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from django.http import HttpResponse, StreamingHttpResponse
from ninja import Field, Router, Schema, Status
from ninja.errors import HttpError

from agents import actions, approvals, config, streaming, tool_actions
from agents import knowledge as knowledge_base
from agents.models import Agent, Approval, Conversation, KnowledgeDocument, McpServer, Tool
from agents.turns import TurnSession
from console.actions import Invalid
from console.api import chat_admission, found, need
from console.audit import Actor

router = Router(tags=["agents"])


class FallbackSchema(Schema):
    backend_id: int
    model: str


class SpecialistSchema(Schema):
    specialist_id: int
    keywords: list[str] = []


class AgentOut(Schema):
    id: int
    name: str
    description: str
    kind: str
    backend_id: int
    model: str
    system_prompt: str
    temperature: float
    max_tokens: int
    first_token_timeout_s: float
    idle_timeout_s: float
    turn_timeout_s: float
    max_tool_iterations: int
    tool_ids: list[int]
    fallbacks: list[FallbackSchema]
    specialist_ids: list[int]
    specialists: list[SpecialistSchema]
    escalation: FallbackSchema | None
    log_content: bool
    enabled: bool
    quick: bool
    version: int

    @staticmethod
    def resolve_tool_ids(agent: Agent) -> list[int]:
        return sorted(t.pk for t in agent.tools.all())

    @staticmethod
    def resolve_specialist_ids(agent: Agent) -> list[int]:
        return [link.specialist_id for link in agent.specialist_links.all()]

    @staticmethod
    def resolve_specialists(agent: Agent) -> list[dict]:
        return [{"specialist_id": link.specialist_id, "keywords": link.keywords}
                for link in agent.specialist_links.all()]

    @staticmethod
    def resolve_escalation(agent: Agent) -> dict | None:
        if agent.escalation_backend_id is None:
            return None
        return {"backend_id": agent.escalation_backend_id, "model": agent.escalation_model}

    @staticmethod
    def resolve_fallbacks(agent: Agent) -> list[dict]:
        return [{"backend_id": f.backend_id, "model": f.model} for f in agent.fallbacks.all()]


class AgentIn(Schema):
    name: str
    description: str = ""
    kind: str = "assistant"
    backend_id: int
    model: str
    system_prompt: str = ""
    temperature: float = 0.7
    max_tokens: int = 1024
    first_token_timeout_s: float = 60.0
    idle_timeout_s: float = 30.0
    turn_timeout_s: float = 300.0
    max_tool_iterations: int = 6
    tool_ids: list[int] = []
    fallbacks: list[FallbackSchema] = []
    specialist_ids: list[int] | None = None
    specialists: list[SpecialistSchema] | None = None
    escalation: FallbackSchema | None = None
    log_content: bool = False
    enabled: bool = True


class AgentPatch(Schema):
    name: str | None = None
    description: str | None = None
    backend_id: int | None = None
    model: str | None = None
    system_prompt: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    first_token_timeout_s: float | None = None
    idle_timeout_s: float | None = None
    turn_timeout_s: float | None = None
    max_tool_iterations: int | None = None
    tool_ids: list[int] | None = None
    fallbacks: list[FallbackSchema] | None = None
    kind: str | None = None
    specialist_ids: list[int] | None = None
    specialists: list[SpecialistSchema] | None = None
    escalation: FallbackSchema | None = None
    log_content: bool | None = None
    quick: bool | None = None
    enabled: bool | None = None


class VersionOut(Schema):
    version: int
    created_by: str
    created_at: datetime
    snapshot: dict[str, Any]


class ToolOut(Schema):
    id: int
    name: str
    kind: str
    description: str
    parameters: dict[str, Any]
    requires_approval: bool
    timeout_s: float
    enabled: bool
    config: dict[str, Any]
    secret_header_names: list[str]
    server_id: int | None


class ChatIn(Schema):
    message: str
    conversation_id: int | None = None


class ToolCallOut(Schema):
    name: str
    arguments: Any
    ok: bool
    result_summary: str
    ms: float
    approved_by: str = ""


class MetricsOut(Schema):
    ttft_ms: float | None
    tokens_in: int
    tokens_out: int
    tokens_per_s: float | None
    total_ms: float | None


class ChatOut(Schema):
    conversation_id: int
    reply: str
    incomplete: bool
    error: str
    route: list[dict[str, Any]]
    tool_calls: list[ToolCallOut]
    metrics: MetricsOut


class MessageOut(Schema):
    id: int
    role: str
    content: str
    tool_calls: list[dict[str, Any]] | None
    tool_call_id: str
    incomplete: bool
    superseded: bool
    created_at: datetime


class ConversationOut(Schema):
    id: int
    agent_id: int | None
    owner: str
    title: str
    messages: list[MessageOut]

    @staticmethod
    def resolve_owner(conversation: Conversation) -> str:
        return conversation.owner.username

    @staticmethod
    def resolve_messages(conversation: Conversation) -> list:
        return list(conversation.messages.all())


def _agent(request, pk: int) -> Agent:
    return found(Agent.objects.for_user(request.user).prefetch_related(
        "tools", "fallbacks", "specialist_links"), "agent", pk=pk)


def _payload(schema: Schema, **kwargs) -> dict[str, Any]:
    data = schema.dict(**kwargs)
    for key in ("fallbacks", "specialists"):
        if data.get(key) is not None:
            data[key] = [dict(f) for f in data[key]]
    if data.get("escalation") is not None:
        data["escalation"] = dict(data["escalation"])
    return data


@router.get("/agents", response=list[AgentOut])
def list_agents(request):
    need(request, "agents.view")
    return list(Agent.objects.for_user(request.user).prefetch_related(
        "tools", "fallbacks", "specialist_links"))


@router.post("/agents", response={201: AgentOut, 422: dict})
def create_agent(request, payload: AgentIn):
    need(request, "agents.change")
    agent = actions.create_agent(Actor.from_request(request), _payload(payload))
    return Status(201, _agent(request, agent.pk))


class QuickIn(Schema):
    backend_id: Any = None
    model: Any = None


@router.post("/agents/quick", response={200: AgentOut, 201: AgentOut, 409: dict, 422: dict})
def quick_agent(request, payload: QuickIn):
    """Chat with a model without building an agent: the quick agent on that backend and
    model (200), or a new one with default settings (201). Chat with it as with any agent;
    PATCH it with `quick: false` (and a name) to keep it as an agent."""
    need(request, "chat")
    need(request, "agents.change")
    agent, created = actions.quick_agent(Actor.from_request(request), payload.backend_id,
                                         payload.model)
    return Status(201 if created else 200, _agent(request, agent.pk))


class ImportIn(Schema):
    yaml: str
    secrets: dict[str, str] = {}


class ChangeOut(Schema):
    action: str
    kind: str
    name: str


class ImportOut(Schema):
    dry_run: bool
    changes: list[ChangeOut]


# export and import before /agents/{pk}, which would otherwise match them
@router.get("/agents/export", response={200: None})
def export_agents(request):
    """Agents and tool settings as YAML (no secrets)."""
    need(request, "agents.view")
    response = HttpResponse(config.export_yaml(), content_type="application/yaml")
    response["Content-Disposition"] = 'attachment; filename="tanglaw-agents.yaml"'
    return response


@router.post("/agents/import", response={200: ImportOut, 422: dict})
def import_agents(request, payload: ImportIn, dry_run: bool = False):
    """Validate the whole file first (every error with its path), then apply it."""
    need(request, "agents.change")
    changes = config.apply(Actor.from_request(request), payload.yaml, dry_run=dry_run,
                           user=request.user, secrets=payload.secrets)
    return {"dry_run": dry_run, "changes": changes}


@router.get("/agents/{pk}", response=AgentOut)
def get_agent(request, pk: int):
    need(request, "agents.view")
    return _agent(request, pk)


@router.patch("/agents/{pk}", response={200: AgentOut, 422: dict})
def patch_agent(request, pk: int, payload: AgentPatch):
    need(request, "agents.change")
    agent = actions.update_agent(Actor.from_request(request), _agent(request, pk),
                                 _payload(payload, exclude_unset=True))
    return _agent(request, agent.pk)


@router.delete("/agents/{pk}", response={204: None, 409: dict})
def delete_agent(request, pk: int):
    need(request, "agents.change")
    actions.delete_agent(Actor.from_request(request), _agent(request, pk))
    return Status(204, None)


@router.get("/agents/{pk}/versions", response=list[VersionOut])
def agent_versions(request, pk: int):
    need(request, "agents.view")
    return list(_agent(request, pk).versions.all())


class DiffOut(Schema):
    field: str
    version_value: Any
    current_value: Any


def _version(agent: Agent, number: int):
    return found(agent.versions, "version", version=number)


@router.get("/agents/{pk}/versions/{number}/diff", response=list[DiffOut])
def version_diff(request, pk: int, number: int):
    need(request, "agents.view")
    agent = _agent(request, pk)
    return actions.diff(agent, _version(agent, number))


@router.post("/agents/{pk}/versions/{number}/restore", response={200: AgentOut, 409: dict})
def version_restore(request, pk: int, number: int):
    need(request, "agents.change")
    agent = _agent(request, pk)
    actions.restore_version(Actor.from_request(request), agent, _version(agent, number))
    return _agent(request, pk)


# The four chat endpoints are async views over agents.turns.TurnSession: their
# database work is the session's one hop (admission included: `chat_admission`), and
# they set `throttle=[]` because the chat rate is checked in that hop, not on the loop.

@router.post("/agents/{pk}/chat", response={200: ChatOut, 403: dict, 404: dict, 409: dict,
                                             422: dict, 429: dict, 503: dict}, throttle=[])
async def chat(request, pk: int, payload: ChatIn):
    """A whole turn for automation: the same turn service as the playground, not streamed.
    A tool that needs approval waits for a decision (`GET /api/approvals`) until the
    approval's deadline."""
    turn = await _message_turn(request, pk, payload, "api")
    await turn.run(_discard)
    return _chat_out(turn)


@router.post("/agents/{pk}/chat/stream", response={200: None, 403: dict, 404: dict,
                                                    409: dict, 422: dict, 429: dict},
             throttle=[])
async def chat_stream(request, pk: int, payload: ChatIn):
    """The same turn streamed as Server-Sent Events (`text/event-stream`): one `data:`
    line per frame, as the WebSocket sends them — turn_started, route, delta,
    tool_call, approval_required (with its `approval_id`), tool_result, error, done
    (with the timings). Closing the connection stops the turn; the partial reply is
    stored as incomplete."""
    return _event_stream(await _message_turn(request, pk, payload, "sse"))


@router.post("/conversations/{pk}/regenerate",
             response={200: ChatOut, 403: dict, 404: dict, 409: dict, 422: dict, 429: dict,
                       503: dict},
             throttle=[])
async def regenerate(request, pk: int):
    """Answer the conversation's last question again. The new answer replaces the last
    one, which is kept as a previous version (`superseded` in the conversation) and is
    not sent to the model."""
    turn = await _regenerate_turn(request, pk, "api")
    await turn.run(_discard)
    return _chat_out(turn)


@router.post("/conversations/{pk}/regenerate/stream",
             response={200: None, 403: dict, 404: dict, 409: dict, 422: dict, 429: dict},
             throttle=[])
async def regenerate_stream(request, pk: int):
    """The regenerate streamed as Server-Sent Events, with the frames of
    `/agents/{id}/chat/stream` (`turn_started` says `"regenerate": true`)."""
    return _event_stream(await _regenerate_turn(request, pk, "sse"))


async def _message_turn(request, pk: int, payload: ChatIn, transport: str) -> TurnSession:
    try:
        return await TurnSession.message(
            Actor.from_request(request), request.user, pk, payload.message,
            payload.conversation_id, transport=transport, admit=chat_admission(request))
    except Invalid as exc:
        if "agent_id" in exc.errors:
            raise HttpError(404, "no such agent") from None
        raise


async def _regenerate_turn(request, pk: int, transport: str) -> TurnSession:
    try:
        return await TurnSession.regenerate(Actor.from_request(request), request.user, pk,
                                            transport=transport,
                                            admit=chat_admission(request))
    except Invalid as exc:
        if "conversation_id" in exc.errors:
            raise HttpError(404, "no such conversation of yours") from None
        raise


async def _discard(frame: dict[str, Any]) -> None:
    """A whole turn's frames: the answer is read from its state at the end."""


def _chat_out(turn: TurnSession) -> dict[str, Any]:
    if not turn.stored:
        raise HttpError(503, turn.state.error)
    state = turn.state
    return {"conversation_id": turn.conversation.pk, "reply": state.text,
            "incomplete": state.incomplete, "error": state.error, "route": state.route,
            "tool_calls": [{"name": c.name, "arguments": c.arguments, "ok": c.ok,
                            "result_summary": c.result_summary, "ms": round(c.ms, 1),
                            "approved_by": c.approved_by}
                           for c in state.tool_calls],
            "metrics": state.metrics()}


def _event_stream(turn: TurnSession) -> StreamingHttpResponse:
    response = StreamingHttpResponse(streaming.sse_turn(turn),
                                     content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response


class ConversationRow(Schema):
    id: int
    agent_id: int | None
    owner: str
    title: str
    updated_at: datetime

    @staticmethod
    def resolve_owner(conversation: Conversation) -> str:
        return conversation.owner.username


@router.get("/conversations", response=list[ConversationRow])
def list_conversations(request, q: str = "", limit: int = 50):
    """Your conversations, newest first (an admin's: everyone's); `q` finds a word in a
    title or any message."""
    need(request, "conversations.view")
    rows = actions.search_conversations(
        Conversation.objects.for_user(request.user).listed().select_related("owner"), q)
    return list(rows[:max(1, min(limit, 200))])


class ConversationPatch(Schema):
    title: Any = None


@router.patch("/conversations/{pk}", response={200: ConversationRow, 409: dict, 422: dict})
def rename_conversation(request, pk: int, payload: ConversationPatch):
    need(request, "conversations.view")
    conversation = found(Conversation.objects.for_user(request.user).select_related("owner"),
                         "conversation", pk=pk)
    return actions.rename_conversation(Actor.from_request(request), request.user,
                                       conversation, payload.title)


@router.delete("/conversations/{pk}", response={204: None, 409: dict})
def delete_conversation(request, pk: int):
    need(request, "conversations.view")
    conversation = found(Conversation.objects.for_user(request.user).select_related("owner"),
                         "conversation", pk=pk)
    actions.delete_conversation(Actor.from_request(request), request.user, conversation)
    return Status(204, None)


@router.get("/conversations/{pk}", response=ConversationOut)
def get_conversation(request, pk: int):
    need(request, "conversations.view")
    return found(Conversation.objects.for_user(request.user).select_related("owner"),
                 "conversation", pk=pk)


class DocumentOut(Schema):
    id: int
    title: str
    uploaded_by: str
    created_at: datetime


class DocumentIn(Schema):
    title: str
    content: str


class HitOut(Schema):
    id: int
    title: str
    excerpt: str
    highlights: list[tuple[int, int]] = []  # [start, end) of each match in the excerpt


@router.get("/knowledge", response=list[DocumentOut])
def list_documents(request):
    need(request, "agents.view")
    return list(KnowledgeDocument.objects.only("pk", "title", "uploaded_by", "created_at"))


@router.post("/knowledge", response={201: DocumentOut, 422: dict})
def add_document(request, payload: DocumentIn):
    need(request, "agents.change")
    return Status(201, knowledge_base.add_document(Actor.from_request(request), payload.title,
                                                   payload.content))


# before /knowledge/{pk}, which would otherwise match "search"
@router.get("/knowledge/search", response=list[HitOut])
def search_documents(request, q: str, limit: int = 5):
    need(request, "agents.view")
    return [vars(h) for h in knowledge_base.search(q, max(1, min(limit, 20)))]


@router.delete("/knowledge/{pk}", response={204: None})
def delete_document(request, pk: int):
    need(request, "agents.change")
    doc = found(KnowledgeDocument.objects, "document", pk=pk)
    knowledge_base.delete_document(Actor.from_request(request), doc)
    return Status(204, None)


@router.get("/tools", response=list[ToolOut])
def list_tools(request):
    need(request, "agents.view")
    return list(Tool.objects.all())


class ToolIn(Schema):
    name: str
    kind: str = "http"
    description: str
    parameters: dict[str, Any] = {"type": "object", "properties": {}}
    requires_approval: bool = False
    timeout_s: float = 10.0
    enabled: bool = True
    config: dict[str, Any]
    secret_headers: dict[str, str] = {}


class ToolPatch(Schema):
    description: str | None = None
    parameters: dict[str, Any] | None = None
    requires_approval: bool | None = None
    timeout_s: float | None = None
    enabled: bool | None = None
    config: dict[str, Any] | None = None
    secret_headers: dict[str, str] | None = None
    clear_secret_headers: bool | None = None
    keep_secret_headers: bool | None = Field(
        None, description="admins: keep the secret headers although the URL's scheme, host "
                          "or port changes (otherwise they are cleared)")


def _tool(pk: int) -> Tool:
    return found(Tool.objects, "tool", pk=pk)


@router.post("/tools", response={201: ToolOut, 422: dict})
def create_tool(request, payload: ToolIn):
    """An HTTP tool (built-in tools exist already; MCP tools come from their server)."""
    need(request, "agents.change")
    return Status(201, tool_actions.create_tool(Actor.from_request(request), payload.dict()))


@router.get("/tools/{pk}", response=ToolOut)
def get_tool(request, pk: int):
    need(request, "agents.view")
    return _tool(pk)


@router.patch("/tools/{pk}", response={200: ToolOut, 422: dict})
def patch_tool(request, pk: int, payload: ToolPatch):
    need(request, "agents.change")
    return tool_actions.update_tool(Actor.from_request(request), _tool(pk),
                                    payload.dict(exclude_unset=True))


@router.delete("/tools/{pk}", response={204: None, 409: dict})
def delete_tool(request, pk: int):
    need(request, "agents.change")
    tool_actions.delete_tool(Actor.from_request(request), _tool(pk))
    return Status(204, None)


class McpServerOut(Schema):
    id: int
    name: str
    transport: str
    url: str
    command: str
    args: list[str]
    secret_header_names: list[str]
    enabled: bool
    last_listed_at: datetime | None
    last_error: str
    tool_ids: list[int]

    @staticmethod
    def resolve_tool_ids(server: McpServer) -> list[int]:
        return sorted(t.pk for t in server.tools.all())


class McpServerIn(Schema):
    name: str
    transport: str = "http"
    url: str = ""
    command: str = ""
    args: list[str] = []
    secret_headers: dict[str, str] = {}
    enabled: bool = True


class McpServerPatch(Schema):
    name: str | None = None
    url: str | None = None
    command: str | None = None
    args: list[str] | None = None
    secret_headers: dict[str, str] | None = None
    keep_secret_headers: bool | None = Field(
        None, description="admins: keep the secret headers although the URL's scheme, host "
                          "or port changes (otherwise they are cleared)")
    enabled: bool | None = None


class RefreshOut(Schema):
    added: list[str]
    updated: list[str]
    missing: list[str]


def _server(pk: int) -> McpServer:
    return found(McpServer.objects.prefetch_related("tools"), "MCP server", pk=pk)


@router.get("/mcp-servers", response=list[McpServerOut])
def list_servers(request):
    need(request, "agents.view")
    return list(McpServer.objects.prefetch_related("tools"))


@router.post("/mcp-servers", response={201: McpServerOut, 422: dict})
def create_server(request, payload: McpServerIn):
    """Register a server (stdio: admins only, allow-listed commands). Then list its tools
    with POST /api/mcp-servers/{id}/refresh; they start disabled."""
    need(request, "agents.change")
    server = tool_actions.create_server(Actor.from_request(request), request.user,
                                        payload.dict())
    return Status(201, _server(server.pk))


@router.get("/mcp-servers/{pk}", response=McpServerOut)
def get_server(request, pk: int):
    need(request, "agents.view")
    return _server(pk)


@router.patch("/mcp-servers/{pk}", response={200: McpServerOut, 409: dict, 422: dict})
def patch_server(request, pk: int, payload: McpServerPatch):
    need(request, "agents.change")
    tool_actions.update_server(Actor.from_request(request), request.user, _server(pk),
                               payload.dict(exclude_unset=True))
    return _server(pk)


@router.delete("/mcp-servers/{pk}", response={204: None, 409: dict})
def delete_server(request, pk: int):
    need(request, "agents.change")
    tool_actions.delete_server(Actor.from_request(request), request.user, _server(pk))
    return Status(204, None)


@router.post("/mcp-servers/{pk}/refresh", response={200: RefreshOut, 409: dict})
def refresh_server(request, pk: int):
    """List the server's tools now: new ones are added disabled, vanished ones disabled."""
    need(request, "agents.change")
    return tool_actions.refresh_server(Actor.from_request(request), _server(pk))


class ApprovalOut(Schema):
    id: int
    conversation_id: int
    agent: str = Field(alias="agent_name")
    tool: str = Field(alias="tool_name")
    arguments: Any
    transport: str
    status: str
    requested_at: datetime
    deadline: datetime
    decided_at: datetime | None
    decided_by: str


class DecisionIn(Schema):
    decision: Literal["approve", "deny"]


@router.get("/approvals", response=list[ApprovalOut])
def list_approvals(request, status: Literal["pending", "all"] = "pending"):
    """Tool calls of your own turns (any transport) that wait for your decision; `all`:
    the latest 100, decided ones too."""
    need(request, "chat")
    if status == "pending":
        return list(approvals.pending_for(request.user))
    return list(Approval.objects.filter(owner=request.user)[:100])


@router.post("/approvals/{pk}", response={200: ApprovalOut, 404: dict, 409: dict})
def decide_approval(request, pk: int, payload: DecisionIn):
    """Approve or deny a waiting call; the turn goes on at once, on whichever worker runs
    it. 409 when it was decided already, expired, or its turn ended."""
    need(request, "chat")
    try:
        return approvals.decide(Actor.from_request(request), request.user, pk,
                                payload.decision == "approve")
    except Invalid:
        raise HttpError(404, "no such approval of yours") from None
