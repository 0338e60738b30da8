"""Choices used across the console, with the colour each status shows in the UI."""

from django.db import models


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    OPERATOR = "operator", "Operator"
    VIEWER = "viewer", "Viewer"


class BackendKind(models.TextChoices):
    OLLAMA = "ollama", "Ollama"
    FOUNDRY_LOCAL = "foundry_local", "Foundry Local"
    VLLM = "vllm", "vLLM"
    LLAMACPP = "llamacpp", "llama.cpp server"
    OPENAI_COMPATIBLE = "openai_compatible", "OpenAI-compatible (LM Studio, cloud, other)"


class Status(models.TextChoices):
    UNKNOWN = "unknown", "Not checked yet"
    HEALTHY = "healthy", "Healthy"
    DEGRADED = "degraded", "Degraded"
    UNHEALTHY = "unhealthy", "Unhealthy"


STATUS_COLOURS: dict[str, str] = {
    Status.UNKNOWN: "grey",
    Status.HEALTHY: "green",
    Status.DEGRADED: "amber",
    Status.UNHEALTHY: "red",
}


class Outcome(models.TextChoices):
    SUCCESS = "success", "Success"
    FAILURE = "failure", "Failure"
    DENIED = "denied", "Denied"


class AuditAction(models.TextChoices):
    """The fixed vocabulary of audit actions. Add here, never invent one inline."""

    AUTH_LOGIN = "auth.login"
    AUTH_LOGIN_FAILED = "auth.login_failed"
    AUTH_LOGOUT = "auth.logout"
    AUTH_SSO_LOGIN = "auth.sso_login"  # signed in through the identity provider
    AUTH_SSO_REFUSED = "auth.sso_refused"  # the provider vouched, but no group may sign in
    AUTH_SSO_FAILED = "auth.sso_failed"  # a bad state or nonce, the provider refused…
    AUTH_PASSWORD_CHANGED = "auth.password_changed"
    USER_CREATED = "user.created"
    USER_ROLE_CHANGED = "user.role_changed"
    USER_ACTIVATED = "user.activated"
    USER_DEACTIVATED = "user.deactivated"
    TOKEN_CREATED = "token.created"
    TOKEN_REVOKED = "token.revoked"
    BACKEND_CREATED = "backend.created"
    BACKEND_UPDATED = "backend.updated"
    BACKEND_DELETED = "backend.deleted"
    BACKEND_TESTED = "backend.tested"
    HOST_CREATED = "host.created"  # a fleet host and its exporters
    HOST_UPDATED = "host.updated"
    HOST_DELETED = "host.deleted"
    HOST_TESTED = "host.tested"
    BACKEND_REFUSED_URL = "backend.url_refused"
    BACKEND_DISCOVERED = "backend.discovered"
    BREAKER_OPENED = "backend.breaker_opened"
    BREAKER_CLOSED = "backend.breaker_closed"
    MODEL_PULL_STARTED = "model.pull_started"
    MODEL_PULLED = "model.pulled"
    MODEL_PULL_FAILED = "model.pull_failed"
    MODEL_PULL_CANCELLED = "model.pull_cancelled"
    MODEL_LOADED = "model.loaded"
    MODEL_UNLOADED = "model.unloaded"
    MODEL_DELETED = "model.deleted"
    PLAN_SAVED = "plan.saved"
    CONFIG_APPLIED = "config.applied"
    PLAN_DELETED = "plan.deleted"
    AGENT_CREATED = "agent.created"
    AGENT_UPDATED = "agent.updated"
    AGENT_DELETED = "agent.deleted"
    AGENT_RESTORED = "agent.restored"
    AGENT_TURN = "agent.turn"
    AGENT_ROUTED = "agent.routed"
    TOOL_CALLED = "tool.called"
    TOOL_APPROVAL_DECIDED = "tool.approval_decided"
    TOOL_CREATED = "tool.created"
    TOOL_UPDATED = "tool.updated"
    TOOL_DELETED = "tool.deleted"
    MCP_SERVER_CREATED = "mcp_server.created"
    MCP_SERVER_UPDATED = "mcp_server.updated"
    MCP_SERVER_DELETED = "mcp_server.deleted"
    MCP_SERVER_REFRESHED = "mcp_server.refreshed"
    KNOWLEDGE_ADDED = "knowledge.added"
    KNOWLEDGE_DELETED = "knowledge.deleted"
    AUDIT_EXPORTED = "audit.exported"
    AUDIT_VERIFIED = "audit.verified"
    AUDIT_PRUNED = "audit.pruned"
    SECRETS_ROTATED = "secrets.rotated"
    PERMISSION_DENIED = "permission.denied"
    RATE_LIMITED = "request.rate_limited"
    GATEWAY_REQUEST = "gateway.request"
    ALIAS_CREATED = "alias.created"
    ALIAS_UPDATED = "alias.updated"
    ALIAS_DELETED = "alias.deleted"
    TOKEN_UPDATED = "token.updated"
    ALERT_FIRED = "alert.fired"
    ALERT_RESOLVED = "alert.resolved"
    ALERT_ACKNOWLEDGED = "alert.acknowledged"
    ALERT_RULE_CREATED = "alert_rule.created"
    ALERT_RULE_UPDATED = "alert_rule.updated"
    ALERT_RULE_DELETED = "alert_rule.deleted"
    DATASET_CREATED = "dataset.created"
    DATASET_UPDATED = "dataset.updated"  # a new version
    DATASET_DELETED = "dataset.deleted"
    EXPERIMENT_STARTED = "experiment.started"
    EXPERIMENT_CANCELLED = "experiment.cancelled"
    EXPERIMENT_RESUMED = "experiment.resumed"
    EXPERIMENT_FINISHED = "experiment.finished"
    EXPERIMENT_DELETED = "experiment.deleted"
    CONVERSATION_RENAMED = "conversation.renamed"
    CONVERSATION_CONTINUED = "conversation.continued"  # a comparison's column, in the playground
    AGENT_REGRESSION_SET = "agent.regression_set"  # the dataset an agent's changes run on
    AGENT_COMPARED = "agent.compared"  # one message to several targets at once
    CONVERSATION_DELETED = "conversation.deleted"
    CHANNEL_CREATED = "channel.created"
    CHANNEL_UPDATED = "channel.updated"
    CHANNEL_DELETED = "channel.deleted"
    CHANNEL_TESTED = "channel.tested"  # a test notification sent, with its outcome
    MONITOR_SETTINGS_CHANGED = "monitor.settings_changed"
    RECOMMENDATION_APPLIED = "recommendation.applied"
    AUTOMATION_CHANGED = "automation.changed"  # a rule set to suggest or apply by itself
    ENGINE_CREATED = "engine.created"
    ENGINE_UPDATED = "engine.updated"
    ENGINE_DELETED = "engine.deleted"
    ENGINE_STARTED = "engine.start"  # asked for by an operator (or an automatic action)
    ENGINE_STOPPED = "engine.stop"
    ENGINE_RESTARTED = "engine.restart"
    ENGINE_READY = "engine.ready"  # the supervisor's: healthy, backend registered
    ENGINE_EXITED = "engine.exited"  # it died; what the supervisor does next
    ENGINE_FAILED = "engine.failed"  # it could not be started, or gave up
