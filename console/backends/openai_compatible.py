"""Any OpenAI-compatible server: LM Studio, a cloud endpoint, anything else.

The base URL is the API root (e.g. http://127.0.0.1:1234/v1); `/models` is the
only portable probe that costs nothing.
"""

from __future__ import annotations

from console.backends.base import HEALTHY, Adapter, Health, _openai_list


class OpenAICompatibleAdapter(Adapter):
    kind = "openai_compatible"
    engine = "the OpenAI-compatible server"
    lifecycle_note = ("a generic OpenAI-compatible server has no API to pull, load or unload "
                      "models; manage them in the server itself (e.g. LM Studio's `lms load`)")
    api_prefix = ""

    async def health(self) -> Health:
        response, ms = await self.timed_get("/models")
        self.check_status(response, "/models")
        _openai_list(self.parse_json(response, "/models"), self)
        return Health(HEALTHY, ms)
