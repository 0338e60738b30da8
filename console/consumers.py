"""/ws/jobs/: live progress of model pulls, for every page (the jobs tray) and the models
page. Read-only: starting and cancelling go through the pages and the API.

The monitor runs the pulls (console.jobs) and sends each step to the `jobs` group.
With the in-memory channel layer (one machine, `make run`) that group lives in the
monitor's process, not this one, so here one relay per event loop reads the jobs
that changed from their rows, twice a second while anyone watches, and sends them
to this process's group.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta
from weakref import WeakKeyDictionary

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import InMemoryChannelLayer
from django.db.models import Q
from django.utils import timezone

from console.jobs import GROUP
from console.models import Job
from console.permissions import has_perm
from console.ws import GracefulMixin, RevocableMixin, current_user

log = logging.getLogger("tanglaw.jobs")
RELAY_EVERY_S = 0.5


def _recent_frames(minutes: float) -> list[dict]:
    recent = timezone.now() - timedelta(minutes=minutes)
    jobs = Job.objects.filter(Q(state__in=Job.ACTIVE) | Q(finished_at__gte=recent))
    return [job.frame() for job in jobs.order_by("created_at")[:20]]


class Relay:
    """Rows → this process's `jobs` group, for a channel layer that cannot hear the
    monitor. One per event loop; it runs only while a socket watches."""

    def __init__(self, layer) -> None:
        self.layer, self.watchers = layer, 0
        self.task: asyncio.Task | None = None
        self.sent: dict[int, dict] = {}

    def watch(self) -> None:
        self.watchers += 1
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run())

    def unwatch(self) -> None:
        self.watchers -= 1
        if self.watchers <= 0 and self.task is not None:
            self.task.cancel()
            self.task, self.sent = None, {}

    async def _run(self) -> None:
        while True:
            try:
                frames = await database_sync_to_async(_recent_frames)(1)
                for frame in frames:
                    if self.sent.get(frame["id"]) != frame:
                        await self.layer.group_send(GROUP, {"type": "job.update",
                                                            "frame": frame})
                self.sent = {frame["id"]: frame for frame in frames}
            except Exception:  # noqa: BLE001 - the database may answer next time
                log.exception("relaying job progress failed")
            await asyncio.sleep(RELAY_EVERY_S)


_relays: WeakKeyDictionary[asyncio.AbstractEventLoop, Relay] = WeakKeyDictionary()


def relay_for(layer) -> Relay | None:
    """This loop's relay, where the layer needs one (in-memory); None where it does not."""
    if not isinstance(layer, InMemoryChannelLayer):
        return None
    loop = asyncio.get_running_loop()
    if loop not in _relays or _relays[loop].layer is not layer:
        _relays[loop] = Relay(layer)
    return _relays[loop]


class JobsConsumer(GracefulMixin, RevocableMixin, AsyncWebsocketConsumer):
    relay: Relay | None = None  # set once connected; None where the layer needs none

    async def connect(self):
        user = await current_user(self.scope)
        if user is None or not has_perm(user, "backends.view"):
            await self.close(code=4403)
            return
        if not await self.take_socket_slot(user):
            return
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.join_user_group(user)
        for frame in await database_sync_to_async(_recent_frames)(10):
            await self.send(text_data=json.dumps(frame))
        self.relay = relay_for(self.channel_layer)
        if self.relay is not None:
            self.relay.watch()

    async def disconnect(self, code):
        if self.relay is not None:
            self.relay.unwatch()
            self.relay = None
        await self.channel_layer.group_discard(GROUP, self.channel_name)
        await self.leave_user_group()

    async def job_update(self, event):
        await self.send(text_data=json.dumps(event["frame"]))
