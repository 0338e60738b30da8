"""Agents, their tools, conversations and the record of every run."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from agents.choices import (
    AgentKind,
    ApprovalStatus,
    McpTransport,
    MessageRole,
    RunOutcome,
    ToolKind,
)
from console.crypto import EncryptedTextField
from console.models import Backend


class McpServer(models.Model):
    """A Model Context Protocol server whose tools agents may call.

    Streamable HTTP by URL; stdio only by admins, and only for commands in
    TANGLAW_MCP_STDIO_COMMANDS. Its tools are listed into Tool rows (kind mcp),
    disabled until an operator enables them.
    """

    name = models.CharField(max_length=32, unique=True,
                            help_text="short prefix for its tools' names: letters, digits, _ -")
    transport = models.CharField(max_length=8, choices=McpTransport.choices,
                                 default=McpTransport.HTTP)
    url = models.CharField(max_length=500, blank=True, default="")
    command = models.CharField(max_length=500, blank=True, default="")
    args = models.JSONField(default=list, blank=True)
    secret_headers = EncryptedTextField(blank=True, default="",
                                        help_text="JSON object of header → value, encrypted")
    secret_header_names = models.JSONField(default=list, blank=True)
    enabled = models.BooleanField(default=True)
    last_listed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "MCP server"

    def __str__(self) -> str:
        return self.name

    @property
    def target(self) -> str:
        return self.url if self.transport == McpTransport.HTTP else " ".join(
            [self.command, *map(str, self.args)])


class Tool(models.Model):
    """Something an agent may call: a built-in function, an HTTP endpoint or an MCP tool."""

    name = models.CharField(max_length=64, unique=True,
                            help_text="OpenAI-safe: letters, digits, _ and - (max 64)")
    kind = models.CharField(max_length=16, choices=ToolKind.choices)
    description = models.TextField()
    parameters = models.JSONField(default=dict, help_text="JSON Schema of the arguments")
    requires_approval = models.BooleanField(default=False)
    timeout_s = models.FloatField(default=10.0)
    config = models.JSONField(default=dict, blank=True, help_text="per-kind settings")
    secret_headers = EncryptedTextField(blank=True, default="",
                                        help_text="HTTP tools: JSON header → value, encrypted")
    secret_header_names = models.JSONField(default=list, blank=True)
    server = models.ForeignKey(McpServer, on_delete=models.CASCADE, null=True, blank=True,
                               related_name="tools")
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AgentQuerySet(models.QuerySet):
    def for_user(self, user):
        return self if user.is_authenticated and user.is_active else self.none()


class Agent(models.Model):
    """A system prompt on a backend's model, with tools, limits and fallbacks."""

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True, default="")
    kind = models.CharField(max_length=16, choices=AgentKind.choices,
                            default=AgentKind.ASSISTANT)
    system_prompt = models.TextField(blank=True, default="")
    backend = models.ForeignKey(Backend, on_delete=models.PROTECT, related_name="agents")
    model = models.CharField(max_length=200)
    temperature = models.FloatField(default=0.7)
    max_tokens = models.PositiveIntegerField(default=1024)
    first_token_timeout_s = models.FloatField(default=60.0)
    idle_timeout_s = models.FloatField(default=30.0)
    turn_timeout_s = models.FloatField(default=300.0)
    max_tool_iterations = models.PositiveSmallIntegerField(default=6)
    tools = models.ManyToManyField(Tool, blank=True, related_name="agents")
    specialists = models.ManyToManyField("self", symmetrical=False, blank=True,
                                         through="AgentSpecialist",
                                         through_fields=("router", "specialist"),
                                         related_name="routers")
    escalation_backend = models.ForeignKey(
        Backend, on_delete=models.PROTECT, null=True, blank=True, related_name="+",
        help_text="where a turn goes when this agent's models fail, or a router calls it complex")
    escalation_model = models.CharField(max_length=200, blank=True, default="")
    log_content = models.BooleanField(default=False,
                                      help_text="record message text in the audit log")
    enabled = models.BooleanField(default=True)
    quick = models.BooleanField(
        default=False,
        help_text="started by Chat on a model (default settings); listed apart until it is "
                  "saved as an agent")
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AgentQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AgentFallback(models.Model):
    """The next backend+model to try, in order, when the one before fails before any token."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="fallbacks")
    position = models.PositiveSmallIntegerField()
    backend = models.ForeignKey(Backend, on_delete=models.PROTECT, related_name="+")
    model = models.CharField(max_length=200)

    class Meta:
        ordering = ["agent", "position"]
        constraints = [models.UniqueConstraint(fields=["agent", "position"],
                                               name="agents_fallback_agent_position")]

    def __str__(self) -> str:
        return f"{self.agent} #{self.position}: {self.backend} {self.model}"


class AgentSpecialist(models.Model):
    """A router's specialist, with the keywords that pick it when the model's choice is invalid."""

    router = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="specialist_links")
    specialist = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="+")
    position = models.PositiveSmallIntegerField()
    keywords = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["router", "position"]
        constraints = [
            models.UniqueConstraint(fields=["router", "specialist"],
                                    name="agents_specialist_router_specialist"),
            models.UniqueConstraint(fields=["router", "position"],
                                    name="agents_specialist_router_position"),
        ]

    def __str__(self) -> str:
        return f"{self.router} → {self.specialist}"


class AgentVersion(models.Model):
    """A saved state of an agent, kept with who saved it and when."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    snapshot = models.JSONField()
    created_by = models.CharField(max_length=150, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["agent", "-version"]
        constraints = [models.UniqueConstraint(fields=["agent", "version"],
                                               name="agents_version_agent_version")]

    def __str__(self) -> str:
        return f"{self.agent} v{self.version}"


class ConversationQuerySet(models.QuerySet):
    def for_user(self, user):
        """Own conversations; admins read everyone's."""
        if not (user.is_authenticated and user.is_active):
            return self.none()
        if user.effective_role == "admin":
            return self
        return self.filter(owner=user)

    def listed(self):
        """The playground's list: not the turns an experiment ran (each case on each
        target is a conversation, reached from the experiment's results), nor a
        comparison's columns until one is chosen to go on with."""
        return self.exclude(origin__in=(Conversation.Origin.EXPERIMENT,
                                        Conversation.Origin.COMPARE))


class Conversation(models.Model):
    """A chat between one user and one agent."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="conversations")
    agent = models.ForeignKey(Agent, on_delete=models.SET_NULL, null=True,
                              related_name="conversations")
    title = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Origin(models.TextChoices):
        CHAT = "", "chat"  # the playground, the chat API
        GATEWAY = "gateway", "gateway"
        COMPARE = "compare", "comparison"
        EXPERIMENT = "experiment", "experiment"

    origin = models.CharField(max_length=16, blank=True, default="", choices=Origin.choices)

    objects = ConversationQuerySet.as_manager()

    class Meta:
        ordering = ["-updated_at"]
        indexes = [
            # playground: the user's conversations, newest first
            models.Index(fields=["owner", "-updated_at"], name="agents_conv_owner_updated"),
        ]

    def __str__(self) -> str:
        return self.title or f"Conversation {self.pk}"

    @property
    def audit_label(self) -> str:
        # never the title: it is the first words of someone's message
        return f"conversation {self.pk}"


class Run(models.Model):
    """One turn's call(s) to a model: where it went, how fast, how it ended."""

    # kept when its conversation is deleted: the run is the traffic history (metrics,
    # Prometheus counters, the performance report), the messages are not
    conversation = models.ForeignKey(Conversation, on_delete=models.SET_NULL, null=True,
                                     blank=True, related_name="runs")
    agent = models.ForeignKey(Agent, on_delete=models.SET_NULL, null=True, related_name="runs")
    backend = models.ForeignKey(Backend, on_delete=models.SET_NULL, null=True,
                                related_name="runs")
    model = models.CharField(max_length=200)
    started_at = models.DateTimeField()
    ttft_ms = models.FloatField(null=True, blank=True)
    total_ms = models.FloatField(null=True, blank=True)
    tokens_in = models.PositiveIntegerField(null=True, blank=True)
    tokens_out = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_s = models.FloatField(null=True, blank=True)
    usage_reported = models.BooleanField(default=False,
                                         help_text="token counts came from the backend")
    finish_reason = models.CharField(max_length=32, blank=True, default="")
    outcome = models.CharField(max_length=16, choices=RunOutcome.choices)
    error = models.TextField(blank=True, default="")
    route = models.JSONField(null=True, blank=True,
                             help_text="fallback/route decisions with reasons")
    trace_id = models.CharField(max_length=32, blank=True, default="",
                                help_text="the turn's trace (traces.Trace.trace_id)")

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            # monitoring: traffic per backend over a window
            models.Index(fields=["backend", "started_at"], name="agents_run_backend_started"),
            # monitoring: traffic per agent over a window
            models.Index(fields=["agent", "started_at"], name="agents_run_agent_started"),
        ]

    def __str__(self) -> str:
        return f"run {self.pk} ({self.outcome})"


class Message(models.Model):
    """One message of a conversation, as sent to or received from the model."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE,
                                     related_name="messages")
    run = models.ForeignKey(Run, on_delete=models.SET_NULL, null=True, blank=True,
                            related_name="messages")
    role = models.CharField(max_length=16, choices=MessageRole.choices)
    content = models.TextField(blank=True, default="")
    tool_calls = models.JSONField(null=True, blank=True)
    tool_call_id = models.CharField(max_length=100, blank=True, default="")
    incomplete = models.BooleanField(default=False)
    superseded = models.BooleanField(
        default=False, help_text="an answer a regenerate replaced: kept as a previous version, "
                                 "never sent to the model again")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["conversation", "id"]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:40]}"

    @property
    def audit_label(self) -> str:
        return f"{self.role} message {self.pk}"


class ToolCall(models.Model):
    """One tool call a model made during a run, and what came of it."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="tool_calls")
    call_id = models.CharField(max_length=100)
    name = models.CharField(max_length=64)
    arguments = models.JSONField(null=True, blank=True)
    ok = models.BooleanField()
    result_summary = models.TextField(blank=True, default="")
    ms = models.FloatField(default=0)
    approved_by = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        ordering = ["run", "id"]

    def __str__(self) -> str:
        return f"{self.name} ({'ok' if self.ok else 'error'})"


class Approval(models.Model):
    """A tool call waiting for its owner's decision, whatever the transport of the turn
    (the playground's socket, the chat API, its stream). The turn waits until it is
    decided or its deadline passes; the decision may come from any worker."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="approvals")
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE,
                                     related_name="approvals")
    agent_name = models.CharField(max_length=100, blank=True, default="")
    call_id = models.CharField(max_length=100)
    tool_name = models.CharField(max_length=64)
    arguments = models.JSONField(null=True, blank=True)
    transport = models.CharField(max_length=16, choices=[
        ("websocket", "Playground"), ("sse", "Chat API stream"), ("api", "Chat API"),
        ("gateway", "Gateway (/v1)")])
    status = models.CharField(max_length=16, choices=ApprovalStatus.choices,
                              default=ApprovalStatus.PENDING)
    requested_at = models.DateTimeField(default=timezone.now)
    deadline = models.DateTimeField()
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        ordering = ["-requested_at", "-id"]
        indexes = [models.Index(fields=["owner", "status"], name="agents_approval_owner")]

    def __str__(self) -> str:
        return f"{self.tool_name} ({self.status})"

    @property
    def audit_label(self) -> str:
        return f"approval {self.pk} of {self.tool_name}"


class KnowledgeDocument(models.Model):
    """A text document operators upload for the `search_knowledge` tool.

    Indexed for full-text search: an FTS5 table on SQLite (agents.knowledge keeps
    it in step), PostgreSQL's own text search otherwise.
    """

    title = models.CharField(max_length=200)
    content = models.TextField()
    uploaded_by = models.CharField(max_length=150, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.title
