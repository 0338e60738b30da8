"""The chat WebSocket at /ws/chat/: frames as in DESIGN.md.

A thin transport over agents.turns.TurnSession. Every incoming message checks the
frame size, the socket's rate and the role; a turn's first database hop re-checks the
session and the user's chat rate (`admit`), other frames rely on a check at most
SESSION_RECHECK_S old (logout, password and role changes close the socket at once).
Deltas are batched every ~20 ms; stop and disconnect stop the turn, which closes the
upstream stream, and the disconnect waits for every turn's one final save, even when
the server cancels it meanwhile. approve/deny frames decide through agents.approvals,
like the Approvals page and the API. Nothing touches the database per token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from agents import approvals, turns
from agents.turns import TurnSession, outlast
from console import limits
from console.actions import Invalid, Refused
from console.audit import Actor
from console.permissions import has_perm
from console.safeinput import UnsafeInput, loads_json
from console.ws import GracefulMixin, RevocableMixin, current_user, session_user

MAX_FRAME_BYTES = 64 * 1024
RATE_MESSAGES, RATE_WINDOW_S = 20, 10.0
BATCH_S = 0.02
CHECKPOINT_S = turns.CHECKPOINT_S


SESSION_RECHECK_S = 30.0

log = logging.getLogger("tanglaw.chat")


class NotAdmitted(Exception):
    """A turn refused before it starts: its error frame's code and message."""

    def __init__(self, code: str, message: str, *, retry_after: float | None = None,
                 close: int | None = None):
        super().__init__(message)
        self.code, self.message, self.retry_after, self.close = code, message, retry_after, close


class ChatConsumer(GracefulMixin, RevocableMixin, AsyncWebsocketConsumer):
    async def shutdown(self) -> None:
        """The server is stopping: say so, close with "service restart", and let running
        turns save their partial replies (see console.ws.GracefulMixin)."""
        if getattr(self, "turns", None):
            await self.send_json({"type": "error", "code": "server_shutdown",
                                  "message": "the server is restarting; the reply so far is "
                                             "saved"})
        with contextlib.suppress(Exception):
            await self.close(code=1012)
        await self.disconnect(1012)

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or (
                not self.scope.get("auth_token") and user.must_change_password):
            await self.close(code=4401)
            return
        self.turns: dict[int | str, tuple[TurnSession, asyncio.Task]] = {}
        self.recent: list[float] = []
        self.user, self.checked_at = user, time.monotonic()
        if not await self.take_socket_slot(user):
            return
        await self.join_user_group(user)

    async def disconnect(self, code):
        running = list(getattr(self, "turns", {}).values())
        for turn, _ in running:
            turn.stop()
        await self.leave_user_group()
        if not running:
            return
        # each turn saves its partial once, in its own task; a cancellation of this
        # consumer (the server stopping) is held back until those saves are done
        results = await outlast(asyncio.gather(*(task for _, task in running),
                                               return_exceptions=True))
        for result in results:
            if isinstance(result, Exception):  # one turn's failure must not stop the others
                log.error("a turn failed while the socket closed", exc_info=result)

    async def send_json(self, frame: dict[str, Any]) -> None:
        # the socket may go away mid-turn; the turn still saves what it has
        with contextlib.suppress(Exception):
            await self.send(text_data=json.dumps(frame, default=str))

    async def error(self, code: str, message: str, **extra) -> None:
        await self.send_json({"type": "error", "code": code, "message": message, **extra})

    async def receive(self, text_data=None, bytes_data=None):
        if text_data is None:
            return await self.error("bad_frame", "send JSON text frames")
        if len(text_data.encode()) > MAX_FRAME_BYTES:
            return await self.error("too_large", f"frames are limited to {MAX_FRAME_BYTES} bytes")
        now = time.monotonic()
        self.recent = [t for t in self.recent if now - t < RATE_WINDOW_S] + [now]
        if len(self.recent) > RATE_MESSAGES:
            return await self.error("rate_limited", f"more than {RATE_MESSAGES} messages in "
                                    f"{RATE_WINDOW_S:g}s; slow down", retry_after=RATE_WINDOW_S)
        try:
            frame = loads_json(text_data, "frame", max_depth=8)
        except UnsafeInput as exc:
            return await self.error("bad_json", str(exc))
        if not isinstance(frame, dict):
            return await self.error("bad_frame", "a frame is a JSON object with a type")
        kind = frame.get("type")
        # a turn re-checks the session in its own first hop (`admit`); other frames use
        # the last check while it is younger than SESSION_RECHECK_S (logout, password
        # change, deactivation and role changes close the socket at once anyway)
        starts_turn = kind in ("user_message", "regenerate")
        user = self.user if starts_turn else await self.checked_user()
        if user is None:
            await self.error("unauthenticated", "your session has ended; sign in again")
            return await self.close(code=4401)
        if kind in ("user_message", "regenerate", "approve", "deny", "stop") and not has_perm(
                user, "chat"):
            return await self.error("forbidden", "your role may read conversations but not chat")
        if kind == "user_message":
            return await self.user_message(user, frame)
        if kind == "regenerate":
            return await self.regenerate(user, frame)
        if kind == "stop":
            ident = frame.get("conversation_id")
            if ident is None:  # before turn_started: the socket's turns still without an id
                for key, (running, _) in list(self.turns.items()):
                    if isinstance(key, str):
                        running.stop()
            elif isinstance(ident, int) and ident in self.turns:
                self.turns[ident][0].stop()
            return None
        if kind in ("approve", "deny"):
            return await self.decide(user, frame, kind == "approve")
        return await self.error("unknown_type", f"unknown frame type {kind!r}")

    async def user_message(self, user, frame: dict[str, Any]) -> None:
        agent_id, conversation_id, text = (frame.get("agent_id"), frame.get("conversation_id"),
                                           frame.get("text"))
        if not isinstance(agent_id, int) or isinstance(agent_id, bool):
            return await self.error("invalid", "agent_id must be an integer", field="agent_id")
        if conversation_id is not None and not isinstance(conversation_id, int):
            return await self.error("invalid", "conversation_id must be an integer or null",
                                    field="conversation_id")
        if not isinstance(text, str):
            return await self.error("invalid", "text must be a string", field="text")
        if conversation_id in self.turns:
            return await self.error("busy", "a turn is already running in this conversation")
        actor = self.actor(user)
        try:
            turn = await TurnSession.message(actor, user, agent_id, text, conversation_id,
                                             transport="websocket", checkpoint_s=CHECKPOINT_S,
                                             admit=self.admit)
        except NotAdmitted as exc:
            return await self.not_admitted(exc)
        except (Invalid, Refused) as exc:
            return await self.refused(exc)
        self.start(turn)

    async def regenerate(self, user, frame: dict[str, Any]) -> None:
        """Answer the conversation's last question again; the new answer replaces the last
        one, which stays as a previous version (agents.actions.replace_answer)."""
        conversation_id = frame.get("conversation_id")
        if not isinstance(conversation_id, int) or isinstance(conversation_id, bool):
            return await self.error("invalid", "conversation_id must be an integer",
                                    field="conversation_id")
        if conversation_id in self.turns:
            return await self.error("busy", "a turn is already running in this conversation")
        try:
            turn = await TurnSession.regenerate(self.actor(user), user, conversation_id,
                                                transport="websocket",
                                                checkpoint_s=CHECKPOINT_S, admit=self.admit)
        except NotAdmitted as exc:
            return await self.not_admitted(exc)
        except (Invalid, Refused) as exc:
            return await self.refused(exc)
        self.start(turn)

    async def decide(self, user, frame: dict[str, Any], allowed: bool) -> None:
        """approve / deny: the same decision as the Approvals page and the API
        (agents.approvals.decide), for a call waiting in one of this socket's turns."""
        call_id = str(frame.get("tool_call_id"))
        approval = next((t.waiting[call_id] for t, _ in self.turns.values()
                         if call_id in t.waiting), None)
        if approval is None:
            return await self.error("unknown_tool_call", "no call is waiting for approval "
                                    "with that id")
        try:
            await database_sync_to_async(approvals.decide)(self.actor(user), user,
                                                           approval.pk, allowed)
        except (Invalid, Refused) as exc:
            return await self.refused(exc)
        return None

    async def checked_user(self):
        if time.monotonic() - self.checked_at > SESSION_RECHECK_S:
            self.user, self.checked_at = await current_user(self.scope), time.monotonic()
        return self.user

    def admit(self):
        """A turn's admission, in its first database hop (sync): the session re-checked,
        the role, and the user's chat rate (the same bucket as the chat API's, across
        sockets and workers)."""
        user = session_user(self.scope)
        self.user, self.checked_at = user, time.monotonic()
        if user is None:
            raise NotAdmitted("unauthenticated", "your session has ended; sign in again",
                              close=4401)
        if not has_perm(user, "chat"):
            raise NotAdmitted("forbidden", "your role may read conversations but not chat")
        wait = limits.chat_wait(user, (self.scope.get("client") or [None])[0])
        if wait is not None:
            raise NotAdmitted("rate_limited", f"too many chat turns; try again in {wait:.0f} s",
                              retry_after=wait)
        return user

    async def not_admitted(self, exc: NotAdmitted) -> None:
        extra = {"retry_after": exc.retry_after} if exc.retry_after is not None else {}
        await self.error(exc.code, exc.message, **extra)
        if exc.close is not None:
            await self.close(code=exc.close)

    def actor(self, user) -> Actor:
        return Actor(user_id=user.pk, username=user.username, role=user.effective_role,
                     ip=(self.scope.get("client") or [None])[0],
                     correlation_id=uuid.uuid4().hex)

    async def refused(self, exc: Invalid | Refused) -> None:
        errors = getattr(exc, "errors", {})
        await self.error("invalid" if errors else "refused", str(exc),
                         field=next(iter(errors), None))

    def start(self, turn: TurnSession) -> None:
        # keyed by the conversation; a new one has no id until its question is written,
        # so it is keyed by the turn until then
        key: int | str = turn.conversation.pk or turn.turn_id
        task = asyncio.create_task(self.turn(turn))
        self.turns[key] = (turn, task)

        def finished(_task: asyncio.Task) -> None:
            for k, (t, _) in list(self.turns.items()):
                if t is turn:
                    self.turns.pop(k, None)

        task.add_done_callback(finished)

    async def turn(self, turn: TurnSession) -> None:
        # deltas: the first goes out at once (time to first token), and so does every
        # token of a stream slower than one per ~BATCH_S; faster streams are merged into
        # at most one frame per BATCH_S, and a timer sends what waits, so a token is
        # never held until the next one arrives
        buffer: list[str] = []
        last_flush = last_token = 0.0
        later: asyncio.Task | None = None

        async def flush() -> None:
            nonlocal last_flush
            if buffer:
                text_out = "".join(buffer)
                buffer.clear()
                await self.send_json({"type": "delta", "text": text_out})
            last_flush = time.monotonic()

        async def flush_after(delay: float) -> None:
            await asyncio.sleep(delay)
            await flush()

        async def emit(frame: dict[str, Any]) -> None:
            nonlocal later, last_token
            if frame["type"] == "delta":
                buffer.append(frame["text"])
                now = time.monotonic()
                # judged on the gap between tokens, not since the last frame: a stream at
                # about BATCH_S per token would otherwise lock onto the timer and carry
                # its delay on from token to token
                slow = now - last_token >= BATCH_S * 0.8
                last_token = now
                wait = BATCH_S - (now - last_flush)
                if slow or wait <= 0:
                    await flush()  # a pending timer then finds nothing left to send
                elif later is None or later.done():
                    later = asyncio.create_task(flush_after(wait))
                return
            if frame["type"] == "turn_started" and turn.turn_id in self.turns:
                # the new conversation has its id now: a stop frame names it
                self.turns[turn.conversation.pk] = self.turns.pop(turn.turn_id)
            await flush()
            await self.send_json(frame)

        async def done(frame: dict[str, Any]) -> None:
            if later is not None:
                await later  # at most BATCH_S: the frame it holds goes out in order
            await flush()
            await self.send_json(frame)

        await turn.run(emit, done)
