"""/ws/jobs/: live progress of model pulls, for every page (the jobs tray) and the models
page. Read-only: starting and cancelling go through the pages and the API."""

from __future__ import annotations

import json
from datetime import timedelta

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.db.models import Q
from django.utils import timezone

from console.models import Job
from console.permissions import has_perm
from console.ws import GracefulMixin, RevocableMixin, current_user

GROUP = "jobs"


class JobsConsumer(GracefulMixin, RevocableMixin, AsyncWebsocketConsumer):
    async def connect(self):
        user = await current_user(self.scope)
        if user is None or not has_perm(user, "backends.view"):
            await self.close(code=4403)
            return
        await self.accept()
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.join_user_group(user)
        for frame in await self.snapshot():
            await self.send(text_data=json.dumps(frame))

    async def disconnect(self, code):
        await self.channel_layer.group_discard(GROUP, self.channel_name)
        await self.leave_user_group()

    @database_sync_to_async
    def snapshot(self) -> list[dict]:
        recent = timezone.now() - timedelta(minutes=10)
        jobs = Job.objects.filter(Q(state__in=Job.ACTIVE) | Q(finished_at__gte=recent))
        return [job.frame() for job in jobs.order_by("created_at")[:20]]

    async def job_update(self, event):
        await self.send(text_data=json.dumps(event["frame"]))
