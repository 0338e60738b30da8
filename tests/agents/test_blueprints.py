"""Each process keeps what a turn needs about its agent (agents.blueprints) and rebuilds
it when the configuration generation moves: on any change, in any process."""

import os
import subprocess
import sys

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents import actions, blueprints
from agents.models import Agent, AgentFallback, McpServer, Tool
from console import generation
from console.audit import Actor
from console.models import Backend

pytestmark = pytest.mark.django_db


@pytest.fixture
def agent():
    backend = Backend.objects.create(name="b", kind="openai_compatible",
                                     base_url="http://127.0.0.1:9/v1")
    return Agent.objects.create(name="helper", backend=backend, model="m")


def prepare(user, agent):
    prepared = actions.prepare_message(Actor(username=user.username), user, agent.pk, "hi",
                                       None)
    from console import limits

    limits.release(prepared.settings.slots)
    return prepared


def test_a_warm_agent_starts_a_new_conversation_without_a_query(operator_user, agent):
    prepare(operator_user, agent)
    with CaptureQueriesContext(connection) as queries:
        prepared = prepare(operator_user, agent)
    assert len(queries) == 0, [q["sql"] for q in queries]
    assert prepared.agent.pk == agent.pk and prepared.settings.candidates[0].model == "m"


CHANGES = {
    "agent saved": lambda a: (setattr(a, "system_prompt", "new"), a.save()),
    "agent deleted": lambda a: a.delete(),
    "backend saved": lambda a: a.backend.save(),
    "fallback added": lambda a: AgentFallback.objects.create(agent=a, position=0,
                                                             backend=a.backend, model="f"),
    "tool saved": lambda a: Tool.objects.get(name="calculator").save(),
    "tool given to the agent": lambda a: a.tools.add(Tool.objects.get(name="calculator")),
    "mcp server saved": lambda a: McpServer.objects.create(name="srv",
                                                           url="http://127.0.0.1:9/mcp"),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_every_kind_of_change_moves_the_generation(agent, change):
    blueprints.blueprint(agent.pk)
    before = generation.current()
    CHANGES[change](agent)
    assert generation.current() != before


def test_a_breaker_transition_moves_the_generation(agent, settings):
    from console import breaker

    settings.TANGLAW_BREAKER_FAILURES = 1
    blueprints.blueprint(agent.pk)
    before = generation.current()
    breaker.record(agent.backend_id, False)  # opens it
    opened = generation.current()
    assert opened != before
    cached = blueprints.blueprint(agent.pk)
    assert cached.primary.backend.breaker_state == "open"  # the cached row was rebuilt


def test_a_change_in_another_process_reaches_this_one(operator_user, agent):
    prepare(operator_user, agent)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    subprocess.run([sys.executable, "-c", "import django; django.setup(); "
                    "from console import generation; generation.bump_now()"],
                   env=env, check=True, timeout=60)
    with CaptureQueriesContext(connection) as queries:
        prepare(operator_user, agent)
    assert any("agents_agent" in q["sql"] for q in queries)  # rebuilt from the database
