"""Fixtures: the three personas, their clients, fake engines and the real llama-server."""

from __future__ import annotations

import pytest
from django.test import Client

from console.audit import Actor
from console.choices import Role
from tests.support.fake_engine import FakeEngine

PASSWORD = "correct-horse-battery"


def make_user(django_user_model, username, role):
    user = django_user_model.objects.create_user(username=username, password=PASSWORD, role=role,
                                                 is_staff=role == Role.ADMIN,
                                                 is_superuser=role == Role.ADMIN)
    return user


@pytest.fixture
def admin_user(db, django_user_model):
    return make_user(django_user_model, "alice", Role.ADMIN)


@pytest.fixture
def operator_user(db, django_user_model):
    return make_user(django_user_model, "oscar", Role.OPERATOR)


@pytest.fixture
def viewer_user(db, django_user_model):
    return make_user(django_user_model, "vera", Role.VIEWER)


def _client(user):
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def admin_client(admin_user):
    return _client(admin_user)


@pytest.fixture
def operator_client(operator_user):
    return _client(operator_user)


@pytest.fixture
def viewer_client(viewer_user):
    return _client(viewer_user)


@pytest.fixture
def actor(operator_user):
    return Actor(user_id=operator_user.pk, username=operator_user.username,
                 role=Role.OPERATOR, ip="127.0.0.1")


@pytest.fixture
def fake():
    """Factory: fake(kind, **options) -> a started FakeEngine, stopped afterwards."""
    engines = []

    def start(kind, **options):
        engine = FakeEngine(kind, **options).start()
        engines.append(engine)
        return engine

    yield start
    for engine in engines:
        engine.stop()


@pytest.fixture
def scripted():
    """A scripted OpenAI-compatible streaming server (tests/support/scripted_openai.py)."""
    from tests.support.scripted_openai import ScriptedOpenAI

    server = ScriptedOpenAI().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    from tests.support.llama_server import LlamaServer

    server = LlamaServer(tmp_path_factory.mktemp("llama")).start()
    yield server
    server.stop()


@pytest.fixture
def live_db(transactional_db):
    """transactional_db whose teardown flush can empty the append-only audit table.

    The triggers are (re)created for the test and dropped just before the flush.
    """
    from django.db import connection

    from console.audit_schema import statements

    with connection.cursor() as cursor:
        for sql in statements(connection.vendor):
            cursor.execute(sql)
    yield
    with connection.cursor() as cursor:
        for sql in statements(connection.vendor, drop=True):
            cursor.execute(sql)
        tables = connection.introspection.table_names(cursor)
        for index in ("agents_knowledge_fts", "agents_knowledge_trigram"):
            if index in tables:
                cursor.execute(f"DELETE FROM {index}")  # flush does not know them


@pytest.fixture(autouse=True)
def _audit_heads_file(settings, tmp_path):
    """Each test its own audit heads file: the database starts empty for every test, the
    data directory does not, and heads left by another test would be missing events."""
    settings.TANGLAW_AUDIT_HEADS_FILE = tmp_path / "audit-heads.jsonl"


@pytest.fixture(autouse=True)
def _audit_triggers(request):
    """Tests on the normal db fixture always see the append-only triggers."""
    uses_db = "db" in request.fixturenames or request.node.get_closest_marker("django_db")
    if not uses_db or "live_db" in request.fixturenames:
        yield
        return
    request.getfixturevalue("db")
    from django.db import connection

    from console.audit_schema import statements

    with connection.cursor() as cursor:
        for sql in statements(connection.vendor):
            cursor.execute(sql)
    yield


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Rate limits, generation slots and socket slots live in the cache, keyed by user id;
    ids repeat across tests, so each test starts with an empty cache."""
    from django.core.cache import cache

    from agents import blueprints

    cache.clear()
    blueprints.forget()  # each process's cached agents (rows and ids repeat across tests)
    yield


@pytest.fixture
def echo():
    """A started EchoServer (tests/support/echo_http.py) on loopback: HTTP tools, egress
    and webhooks talk to it; it records every request."""
    from tests.support.echo_http import EchoServer

    server = EchoServer().start()
    yield server
    server.stop()
