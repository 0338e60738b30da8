"""Tanglaw settings. Every knob comes from the environment (see README, Configuration).

With nothing set, Tanglaw runs on one machine with zero setup: SQLite in the
data directory, the in-memory channel layer and secrets generated on first
run. ``DATABASE_URL`` and ``REDIS_URL`` move it onto PostgreSQL and Redis.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from console import audit_heads, datadir, web
from console.clientaddr import parse_networks
from console.env import (
    LOG_LEVELS,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_ports,
    env_str,
    log_level,
)

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = datadir.ensure_dir(Path(env_str("TANGLAW_DATA_DIR", str(BASE_DIR / "data"))).resolve())

DEBUG = env_bool("DEBUG", False)
SECURE = env_bool("TANGLAW_SECURE", False)

SECRET_KEY = env_str("TANGLAW_SECRET_KEY") or datadir.read_or_create(
    DATA_DIR / "secret_key", datadir.new_secret_key
)
# MultiFernet keys, newest first. `manage.py rotate_keys` prepends a new one.
_keys = env_str("TANGLAW_ENCRYPTION_KEYS")
if _keys:
    TANGLAW_ENCRYPTION_KEYS = [k.strip() for k in _keys.split(",") if k.strip()]
else:
    TANGLAW_ENCRYPTION_KEY_FILE = DATA_DIR / "encryption.keys"
    TANGLAW_ENCRYPTION_KEYS = datadir.read_or_create(
        TANGLAW_ENCRYPTION_KEY_FILE, datadir.new_fernet_key
    ).split()

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",
    "axes",
    "console",
    "agents",
    "monitoring",
    "gateway",
    "traces",
    "engines",
    "evals",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "console.middleware.StaticFilesMiddleware",  # WhiteNoise, async-capable
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "console.middleware.CorrelationIdMiddleware",
    "console.middleware.BodyTooLargeMiddleware",
    "console.middleware.BoundedRequestMiddleware",
    "console.middleware.PasswordChangeRequiredMiddleware",
    # axes last, as its docs ask, so it sees the final response of a login
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "console.urls"
ASGI_APPLICATION = "console.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "console.context_processors.roles",
            ],
        },
    },
]


def _database() -> dict[str, Any]:
    url = env_str("DATABASE_URL")
    if not url:
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "tanglaw.sqlite3",
            # keep each thread's connection: opening one (and its PRAGMAs) cost more
            # than the queries of a chat turn (bench: docs/benchmarks.md)
            "CONN_MAX_AGE": None,
            "OPTIONS": {
                # IMMEDIATE: writers queue on the lock up front instead of failing
                # mid-transaction with "database is locked"; WAL lets readers run
                # beside the one writer.
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    try:
        config = dj_database_url.parse(url, conn_max_age=60, conn_health_checks=True)
    except Exception as exc:  # the library raises several types for bad URLs
        raise ImproperlyConfigured(f"DATABASE_URL is not a database URL: {exc}") from None
    if config["ENGINE"] not in (
        "django.db.backends.postgresql",
        "django.db.backends.sqlite3",
    ):
        raise ImproperlyConfigured("DATABASE_URL must be postgres:// or sqlite://")
    return dict(config)


def _require(module: str, extra: str, variable: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ImproperlyConfigured(
            f"{variable} is set but {module} is not installed: pip install -e '.[{extra}]'")


DATABASES = {"default": _database()}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    _require("psycopg", "postgres", "DATABASE_URL")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

_redis = env_str("REDIS_URL")
if _redis:
    _require("channels_redis", "redis", "REDIS_URL")
CHANNEL_LAYERS = {
    "default": (
        {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [_redis]}}
        if _redis
        else {"BACKEND": "channels.layers.InMemoryChannelLayer"}
    )
}
if _redis:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                          "LOCATION": _redis}}

AUTH_USER_MODEL = "console.User"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "console.passwords.NotLikeUsernameValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
     "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Single sign-on with the organisation's OpenID provider (console.sso): the code flow with
# PKCE and a nonce; the endpoints from the issuer's discovery document, on first use.
TANGLAW_OIDC_ISSUER = env_str("TANGLAW_OIDC_ISSUER", "").rstrip("/")
TANGLAW_OIDC_CLIENT_ID = env_str("TANGLAW_OIDC_CLIENT_ID", "")
TANGLAW_OIDC_NAME = env_str("TANGLAW_OIDC_NAME", "your organisation")
TANGLAW_OIDC_ROLES_CLAIM = env_str("TANGLAW_OIDC_ROLES_CLAIM", "groups")
TANGLAW_OIDC_ADMIN_GROUPS = env_list("TANGLAW_OIDC_ADMIN_GROUPS", [])
TANGLAW_OIDC_OPERATOR_GROUPS = env_list("TANGLAW_OIDC_OPERATOR_GROUPS", [])
TANGLAW_OIDC_VIEWER_GROUPS = env_list("TANGLAW_OIDC_VIEWER_GROUPS", [])
# with SSO on, local passwords are for admins (break-glass); "all" keeps them for everyone
TANGLAW_OIDC_LOCAL_LOGIN = env_str("TANGLAW_OIDC_LOCAL_LOGIN", "admins")
if TANGLAW_OIDC_LOCAL_LOGIN not in ("admins", "all"):
    raise ImproperlyConfigured("TANGLAW_OIDC_LOCAL_LOGIN must be admins or all")
OIDC_RP_CLIENT_ID = TANGLAW_OIDC_CLIENT_ID
OIDC_RP_CLIENT_SECRET = env_str("TANGLAW_OIDC_CLIENT_SECRET", "")
OIDC_RP_SIGN_ALGO = env_str("TANGLAW_OIDC_SIGN_ALGO", "RS256")
OIDC_RP_SCOPES = env_str("TANGLAW_OIDC_SCOPES", "openid email profile groups")
OIDC_USE_PKCE = True
OIDC_USE_NONCE = True
OIDC_TIMEOUT = 10
OIDC_CREATE_USER = True
OIDC_STORE_ACCESS_TOKEN = OIDC_STORE_ID_TOKEN = False
LOGIN_REDIRECT_URL_FAILURE = "/login/"
if TANGLAW_OIDC_ISSUER and TANGLAW_OIDC_CLIENT_ID:
    if not (TANGLAW_OIDC_ADMIN_GROUPS or TANGLAW_OIDC_OPERATOR_GROUPS
            or TANGLAW_OIDC_VIEWER_GROUPS):
        raise ImproperlyConfigured("TANGLAW_OIDC_ISSUER is set but no group may sign in: set "
                                   "TANGLAW_OIDC_ADMIN_GROUPS, _OPERATOR_GROUPS or "
                                   "_VIEWER_GROUPS")
    AUTHENTICATION_BACKENDS.append("console.sso.Backend")

# django-axes: lock a username+IP pair after repeated failures
AXES_FAILURE_LIMIT = env_int("TANGLAW_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("TANGLAW_LOGIN_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
# the client address is decided once, by console.clientaddr (trusted proxies only), and
# written to REMOTE_ADDR; axes must not read forwarding headers itself
AXES_IPWARE_PROXY_COUNT = 0
AXES_IPWARE_META_PRECEDENCE_ORDER = ["REMOTE_ADDR"]
# reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (addresses or
# networks); none by default, so a client cannot choose its own address
TANGLAW_TRUSTED_PROXIES = parse_networks(env_list("TANGLAW_TRUSTED_PROXIES", []))
# the ASGI server `manage.py serve`, `make run-cluster` and the systemd units start
# (console/web/): daphne, uvicorn or granian
TANGLAW_ASGI_SERVER = env_str("TANGLAW_ASGI_SERVER", web.DEFAULT_SERVER).strip().lower()
if TANGLAW_ASGI_SERVER not in web.SERVERS:
    raise ImproperlyConfigured(f"TANGLAW_ASGI_SERVER={TANGLAW_ASGI_SERVER!r} is not one of "
                               f"{', '.join(web.SERVERS)}")

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = datadir.ensure_dir(DATA_DIR / "static")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

# Security headers. A strict CSP: no inline script, no eval, nothing remote.
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = env_int("TANGLAW_SESSION_HOURS", 12, minimum=1) * 3600
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
if SECURE:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_bool("TANGLAW_SSL_REDIRECT", True)
    # no SECURE_PROXY_SSL_HEADER: console.clientaddr sets the scheme from a trusted
    # proxy's X-Forwarded-Proto and strips the header from everyone else
    SECURE_HSTS_SECONDS = env_int("TANGLAW_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("TANGLAW_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("TANGLAW_HSTS_PRELOAD", True)

# Backends
TANGLAW_DISCOVERY_PORTS = env_ports("TANGLAW_DISCOVERY_PORTS", [11434, 8000, 8080, 9931, 1234])
TANGLAW_DISCOVERY_HOST = env_str("TANGLAW_DISCOVERY_HOST", "127.0.0.1")
TANGLAW_FOUNDRY_CLI = env_str("TANGLAW_FOUNDRY_CLI", "foundry")
# a backend whose health answers slower than this is shown as degraded
TANGLAW_SLOW_MS = env_int("TANGLAW_SLOW_MS", 2000, minimum=1)
# the status badges re-probe a backend whose last check is older than this
TANGLAW_STATUS_MAX_AGE_S = env_int("TANGLAW_STATUS_MAX_AGE_S", 15, minimum=1)
# the monitor (manage.py monitor): intervals and how long each tier of samples is kept
TANGLAW_PROBE_INTERVAL_S = env_int("TANGLAW_PROBE_INTERVAL_S", 30, minimum=1)
TANGLAW_HOST_INTERVAL_S = env_int("TANGLAW_HOST_INTERVAL_S", 5, minimum=1)
# the monitor's CPU niceness (0-19): at the edge it shares the cores with chat and the
# engine, and its rounds can wait a few milliseconds where a token should not
TANGLAW_MONITOR_NICE = env_int("TANGLAW_MONITOR_NICE", 10, minimum=0, maximum=19)
TANGLAW_RAW_RETENTION_H = env_int("TANGLAW_RAW_RETENTION_H", 48, minimum=1)
TANGLAW_MINUTE_RETENTION_D = env_int("TANGLAW_MINUTE_RETENTION_D", 30, minimum=1)
TANGLAW_HOUR_RETENTION_D = env_int("TANGLAW_HOUR_RETENTION_D", 730, minimum=1)
# the networks fleet hosts' exporters may be on (scrapes, Test, discovery): loopback,
# the private ranges and CGNAT (Tailscale) unless the operator lists others
TANGLAW_FLEET_NETWORKS = env_list("TANGLAW_FLEET_NETWORKS", [
    "127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
    "100.64.0.0/10", "fc00::/7"])
# a comparison's columns no one continued in the playground (their runs and traces stay)
TANGLAW_COMPARE_RETENTION_H = env_int("TANGLAW_COMPARE_RETENTION_H", 72, minimum=1)
TANGLAW_ALERT_EMAIL_FROM = env_str("TANGLAW_ALERT_EMAIL_FROM", "tanglaw@localhost")

# the audit log's checkpoint key: HMAC-SHA256 over the chain head every N events, kept
# outside the database so rewriting the whole chain there is still detected
TANGLAW_AUDIT_KEY = env_str("TANGLAW_AUDIT_KEY") or datadir.read_or_create(
    DATA_DIR / "audit.key", datadir.new_secret_key)
TANGLAW_AUDIT_CHECKPOINT_EVERY = env_int("TANGLAW_AUDIT_CHECKPOINT_EVERY", 500, minimum=1)
# signed chain heads outside the database (console.audit_heads), so a truncated tail is
# detected: the first event, every N events, and whenever the last head is older than the
# interval; optionally also to syslog ("/dev/log", "host" or "host:port", UDP), off the box
TANGLAW_AUDIT_HEADS_FILE = Path(env_str("TANGLAW_AUDIT_HEADS_FILE",
                                        str(DATA_DIR / "audit-heads.jsonl")))
TANGLAW_AUDIT_HEAD_EVERY = env_int("TANGLAW_AUDIT_HEAD_EVERY", 50, minimum=1)
TANGLAW_AUDIT_HEAD_INTERVAL_S = env_int("TANGLAW_AUDIT_HEAD_INTERVAL_S", 300, minimum=1)
TANGLAW_AUDIT_HEADS_SYSLOG = env_str("TANGLAW_AUDIT_HEADS_SYSLOG", "")

# the largest request body, uploads included (config files, knowledge documents)
TANGLAW_MAX_UPLOAD_MB = env_int("TANGLAW_MAX_UPLOAD_MB", 8, minimum=1, maximum=1024)
FILE_UPLOAD_HANDLERS = [
    "console.uploads.LimitedUploadHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]

# rate limits (per user, shared through the cache) and caps on concurrent generations
TANGLAW_API_RATE = env_str("TANGLAW_API_RATE", "600/m")
TANGLAW_CHAT_RATE = env_str("TANGLAW_CHAT_RATE", "60/m")
# the gateway's token budgets reset at midnight (and on the 1st) in this time zone
TANGLAW_GATEWAY_BUDGET_TZ = env_str("TANGLAW_GATEWAY_BUDGET_TZ", TIME_ZONE)
# gateway requests are written in batches this often (seconds; 0: each by its request)
TANGLAW_GATEWAY_FLUSH_S = env_float("TANGLAW_GATEWAY_FLUSH_S", 1.0, minimum=0.0)
# message text of pass-through requests in their audit events (agents have their own switch)
TANGLAW_GATEWAY_LOG_CONTENT = env_bool("TANGLAW_GATEWAY_LOG_CONTENT", False)
# traces (traces/): spans are written in batches this often (seconds; 0: by their sender)
TANGLAW_TRACE_FLUSH_S = env_float("TANGLAW_TRACE_FLUSH_S", 1.0, minimum=0.0)
# traces are kept this many days, and the oldest go once all of them pass this many spans
TANGLAW_TRACE_RETENTION_DAYS = env_float("TANGLAW_TRACE_RETENTION_DAYS", 14.0, minimum=0.01)
TANGLAW_TRACE_MAX_SPANS = env_int("TANGLAW_TRACE_MAX_SPANS", 1_000_000, minimum=1000)
# OTLP/HTTP receiver (/v1/traces, /v1/metrics): the largest body, compressed or inflated,
# and the spans per second one key may send to one worker (a burst of twice that passes)
TANGLAW_OTLP_MAX_MB = env_int("TANGLAW_OTLP_MAX_MB", 8, minimum=1)
TANGLAW_OTLP_SPANS_PER_S = env_int("TANGLAW_OTLP_SPANS_PER_S", 5000, minimum=1)
# managed engines (engines/): the commands an admin may run, `;`-separated, each split
# like a shell would; unset: the llama-server and vllm installed here. Set it to nothing
# to allow none. A monitor runs engines unless TANGLAW_ENGINE_SUPERVISOR is off (a monitor
# on a machine without the models, say).
_engine_commands = os.environ.get("TANGLAW_ENGINE_COMMANDS")
TANGLAW_ENGINE_COMMANDS = None if _engine_commands is None else [
    part.strip() for part in _engine_commands.split(";") if part.strip()]
TANGLAW_ENGINE_SUPERVISOR = env_bool("TANGLAW_ENGINE_SUPERVISOR", True)
# open WebSockets per user (chat and job progress, every worker together)
TANGLAW_MAX_SOCKETS_PER_USER = env_int("TANGLAW_MAX_SOCKETS_PER_USER", 16, minimum=1)
TANGLAW_MAX_GENERATIONS_PER_USER = env_int("TANGLAW_MAX_GENERATIONS_PER_USER", 4, minimum=1)
TANGLAW_MAX_GENERATIONS_PER_BACKEND = env_int("TANGLAW_MAX_GENERATIONS_PER_BACKEND", 16,
                                              minimum=1)

# the chat path's circuit breaker: open after this many failures in a row, retry after
TANGLAW_BREAKER_FAILURES = env_int("TANGLAW_BREAKER_FAILURES", 5, minimum=1)
TANGLAW_BREAKER_COOLDOWN_S = env_int("TANGLAW_BREAKER_COOLDOWN_S", 30, minimum=1)

# stdio MCP servers: the only commands an admin may register (full paths or names on PATH);
# empty means stdio servers are off, streamable-HTTP servers need no entry
TANGLAW_MCP_STDIO_COMMANDS = env_list("TANGLAW_MCP_STDIO_COMMANDS", [])

# Quiet by default: warnings and errors (make run adds its start lines). INFO adds each
# monitor round, the servers' access logs and expected 4xx answers; DEBUG everything.
TANGLAW_LOG_LEVEL = log_level()
if TANGLAW_LOG_LEVEL not in LOG_LEVELS:
    raise ImproperlyConfigured(f"TANGLAW_LOG_LEVEL={TANGLAW_LOG_LEVEL!r} is not one of DEBUG, "
                               f"INFO, WARNING, ERROR, CRITICAL")
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "console.redact.RedactingFilter"},
                "expected": {"()": "console.redact.ExpectedResponseFilter",
                             "level": TANGLAW_LOG_LEVEL}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain",
                    "filters": ["expected", "redact"]},
    },
    "root": {"handlers": ["console"], "level": TANGLAW_LOG_LEVEL},
    "loggers": {"httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"},
                "httpx2": {"level": "WARNING"}, "mcp": {"level": "WARNING"}},
}
if TANGLAW_AUDIT_HEADS_SYSLOG:
    LOGGING["handlers"]["audit_heads"] = audit_heads.syslog_handler(TANGLAW_AUDIT_HEADS_SYSLOG)
    # always at INFO (each head is one INFO line), whatever TANGLAW_LOG_LEVEL is, and to
    # the collector only: not a line on the console per audit head
    LOGGING["loggers"]["tanglaw.audit.heads"] = {"handlers": ["audit_heads"], "level": "INFO",
                                                 "propagate": False}

# WebSocket routes, by dotted path (console imports no app directly)
TANGLAW_WEBSOCKET_ROUTES = ["agents.routing.websocket_urlpatterns",
                            "console.routing.websocket_urlpatterns"]
TANGLAW_APP_URLS = ["agents.urls", "monitoring.urls", "gateway.urls", "traces.urls",
                    "engines.urls", "evals.urls"]
# path prefixes an app serves with its own ASGI app (console.asgi)
TANGLAW_ASGI_MOUNTS = [("/v1/", "gateway.asgi.application")]
# the sections of the whole-site configuration file, in the order they apply
TANGLAW_CONFIG_SECTIONS = ["console.config_sections.BackendsSection",
                           "agents.config.AgentsSection",
                           "monitoring.config.AlertRulesSection",
                           "console.config_sections.PlansSection",
                           "engines.config.EnginesSection",
                           "console.config_sections.DeploymentSection"]
# live panels other apps add to the overview and to a backend's page (URL names)
TANGLAW_OVERVIEW_PANELS = ["monitoring_overview_panel"]
TANGLAW_BACKEND_PANELS = ["monitoring_backend_panel"]
# the overview's first-run checklist, in order: one function per app (console.first_run)
TANGLAW_FIRST_RUN_STEPS = ["console.first_run.console_steps", "agents.first_run.steps",
                           "monitoring.first_run.steps"]
# what the monitor last saw of each backend's models ({backend id: [model, …]}), read
# where a live probe is not wanted (viewers)
TANGLAW_STORED_MODELS = "monitoring.queries.stored_models"
