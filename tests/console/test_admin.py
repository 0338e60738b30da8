"""The Django admin: history is read-only there; every other write goes through the same
audited actions as the UI and the API."""

import asyncio

import pytest
from channels.layers import get_channel_layer
from django.contrib import admin
from django.test import RequestFactory

from agents.models import Agent, AgentSpecialist
from console.actions import users as user_actions
from console.audit import Actor
from console.models import ApiToken, AuditEvent, Backend, User
from console.ws import user_group

pytestmark = pytest.mark.django_db

# each has its own test below: the admin's writes there go through an action (API tokens
# are read-only but for a "revoke" action, tested below too)
WRITABLE = {"console.User", "agents.Agent"}


def url(model, suffix=""):
    return f"/admin/{model._meta.app_label}/{model._meta.model_name}/{suffix}"


def audited(action):
    return list(AuditEvent.objects.filter(action=action).order_by("seq"))


def test_every_other_model_in_the_admin_is_read_only(admin_user, admin_client):
    request = RequestFactory().get("/admin/")
    request.user = admin_user
    registered = {model._meta.label: (model, model_admin)
                  for model, model_admin in admin.site._registry.items()}
    assert set(registered) >= WRITABLE
    for label, (model, model_admin) in sorted(registered.items()):
        if label in WRITABLE:
            continue
        assert not model_admin.has_add_permission(request), label
        assert not model_admin.has_change_permission(request), label
        assert not model_admin.has_delete_permission(request), label
        assert "delete_selected" not in model_admin.get_actions(request), label
        assert admin_client.get(url(model, "add/")).status_code == 403, label
        assert admin_client.get(url(model)).status_code == 200, label  # still browsable


def test_history_rows_cannot_be_edited_or_deleted_through_the_admin(admin_client,
                                                                   operator_user):
    from agents.models import AgentVersion, Conversation, Message, Run, ToolCall

    backend = Backend.objects.create(name="edge", kind="ollama", base_url="http://10.0.0.2:1")
    agent = Agent.objects.create(name="helper", backend=backend, model="m")
    version = AgentVersion.objects.create(agent=agent, version=1, snapshot={"model": "m"})
    conversation = Conversation.objects.create(owner=operator_user, agent=agent, title="t")
    run = Run.objects.create(conversation=conversation, agent=agent, backend=backend,
                             model="m", started_at="2026-11-24T10:00:00Z", outcome="success")
    message = Message.objects.create(conversation=conversation, run=run, role="user",
                                     content="hello")
    call = ToolCall.objects.create(run=run, name="calculator", arguments={}, ok=True)
    for row, field, value in [(version, "snapshot", '{"model": "evil"}'),
                              (conversation, "title", "rewritten"),
                              (run, "model", "other"), (message, "content", "rewritten"),
                              (call, "approved_by", "mallory")]:
        change = url(type(row), f"{row.pk}/change/")
        assert admin_client.post(change, {field: value}).status_code == 403
        assert admin_client.post(url(type(row), f"{row.pk}/delete/"),
                                 {"post": "yes"}).status_code == 403
        assert admin_client.post(url(type(row)), {"action": "delete_selected",
                                                  "_selected_action": [row.pk],
                                                  "post": "yes"}).status_code in (200, 302)
        assert type(row).objects.filter(pk=row.pk).exists()
        row.refresh_from_db()
        assert getattr(row, field) != value and str(getattr(row, field)) != value


def _socket_messages(user):
    """Listen on the channel layer as one of the user's sockets would."""
    layer = get_channel_layer()
    channel = asyncio.run(layer.new_channel())
    asyncio.run(layer.group_add(user_group(user.pk), channel))

    async def received():
        try:
            return [await asyncio.wait_for(layer.receive(channel), 2)]
        except TimeoutError:
            return []

    return lambda: asyncio.run(received())


def test_an_admin_password_change_is_audited_and_closes_the_users_sockets(
        admin_client, viewer_user, django_capture_on_commit_callbacks):
    received = _socket_messages(viewer_user)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(url(User, f"{viewer_user.pk}/password/"), {
            "password1": "a-new-long-passphrase-7", "password2": "a-new-long-passphrase-7",
            "usable_password": "true"})
    assert response.status_code == 302
    viewer_user.refresh_from_db()
    assert viewer_user.check_password("a-new-long-passphrase-7")
    [event] = audited("auth.password_changed")
    assert event.actor == "alice" and event.target_id == str(viewer_user.pk)
    assert "a-new-long-passphrase-7" not in str(event.after) + event.detail
    [message] = received()
    assert message["type"] == "session.revoked" and message["code"] == 4401


def test_admin_user_changes_go_through_the_user_actions(admin_client, viewer_user,
                                                        django_capture_on_commit_callbacks):
    received = _socket_messages(viewer_user)
    change = url(User, f"{viewer_user.pk}/change/")
    assert "is_active" in admin_client.get(change).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(change, {"email": "evil@example.com"})  # is_active off
    assert response.status_code == 302
    viewer_user.refresh_from_db()
    assert not viewer_user.is_active and viewer_user.email == ""  # email is read-only here
    [event] = audited("user.deactivated")
    assert event.actor == "alice" and event.target_id == str(viewer_user.pk)
    assert received()[0]["type"] == "session.revoked"
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(change, {"is_active": "on"})
    viewer_user.refresh_from_db()
    assert viewer_user.is_active and len(audited("user.activated")) == 1
    # no add or delete here: users are created (with a role) and deactivated on /users/
    assert admin_client.get(url(User, "add/")).status_code == 403
    assert admin_client.post(url(User, f"{viewer_user.pk}/delete/"),
                             {"post": "yes"}).status_code == 403
    assert User.objects.filter(pk=viewer_user.pk).exists()


def test_the_last_admin_cannot_be_deactivated_in_the_admin_either(admin_client, admin_user):
    response = admin_client.post(url(User, f"{admin_user.pk}/change/"), {}, follow=True)
    assert "this is the last active admin" in response.content.decode()
    admin_user.refresh_from_db()
    assert admin_user.is_active and not audited("user.deactivated")


def test_admin_revokes_tokens_through_the_action(admin_client, viewer_user):
    token, _ = user_actions.create_token(Actor.system(), viewer_user, "ci")
    response = admin_client.post(url(ApiToken), {"action": "revoke_tokens",
                                                 "_selected_action": [token.pk]})
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    [event] = audited("token.revoked")
    assert event.actor == "alice" and event.target_id == str(token.pk)
    assert admin_client.post(url(ApiToken, f"{token.pk}/delete/"),
                             {"post": "yes"}).status_code == 403


def test_admin_deletes_agents_through_the_action(admin_client):
    from agents.models import AgentVersion

    backend = Backend.objects.create(name="edge", kind="ollama", base_url="http://10.0.0.2:1")
    one, two, three, four = (Agent.objects.create(name=n, backend=backend, model="m")
                             for n in ("one", "two", "three", "four"))
    for agent in (one, two):  # deleting an agent takes its (read-only here) versions along
        AgentVersion.objects.create(agent=agent, version=1, snapshot={"model": "m"})
    router = Agent.objects.create(name="desk", kind="router", backend=backend, model="m")
    AgentSpecialist.objects.create(router=router, specialist=three, position=0, keywords=[])
    response = admin_client.post(url(Agent, f"{one.pk}/delete/"), {"post": "yes"})
    assert response.status_code == 302 and not Agent.objects.filter(pk=one.pk).exists()
    response = admin_client.post(url(Agent), {"action": "delete_selected", "post": "yes",
                                              "_selected_action": [two.pk, four.pk]})
    assert response.status_code == 302
    assert not Agent.objects.filter(pk__in=[two.pk, four.pk]).exists()
    deleted = audited("agent.deleted")
    assert sorted(e.target_id for e in deleted) == sorted(str(a.pk) for a in (one, two, four))
    assert all(e.actor == "alice" and e.before["name"] for e in deleted)
    # a specialist of a router is refused, as on the Agents page
    for refused in (admin_client.post(url(Agent, f"{three.pk}/delete/"), {"post": "yes"}),
                    admin_client.post(url(Agent), {"action": "delete_selected", "post": "yes",
                                                   "_selected_action": [three.pk]})):
        assert refused.status_code in (200, 302)
    assert Agent.objects.filter(pk=three.pk).exists() and len(audited("agent.deleted")) == 3
    assert admin_client.get(url(Agent, "add/")).status_code == 403
    assert admin_client.post(url(Agent, f"{router.pk}/change/"),
                             {"name": "renamed"}).status_code == 403
