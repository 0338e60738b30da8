"""A Microsoft Agent Framework agent set up as MAF's docs show, reporting its spans to
Tanglaw over OTLP/HTTP: `configure_otel_providers(...)` pointed at the console with a
gateway key. Run as its own process (MAF sets the process's global OpenTelemetry
providers). With --propagate the OpenAI client sends the W3C traceparent of MAF's
`chat` span, so Tanglaw's spans of the same call (through the gateway) join the trace.

python maf_otel_client.py --console URL --key KEY --base-url URL --model M --name N
    [--raise] [--propagate] [--prompt TEXT]
"""

from __future__ import annotations

import argparse
import asyncio


def get_weather(city: str) -> str:
    """Get the weather for a city."""
    if ARGS.raise_:
        raise ValueError(f"the weather service is down for {city}")
    return f"It is sunny in {city}."


async def main() -> str:
    import httpx2
    from agent_framework import Agent, tool
    from agent_framework.observability import configure_otel_providers
    from agent_framework_openai import OpenAIChatCompletionClient
    from openai import AsyncOpenAI
    from opentelemetry.propagate import inject

    # the three lines of the README's "Traces" section
    configure_otel_providers(otlp_endpoint=ARGS.console, otlp_protocol="http/protobuf",
                             otlp_headers={"Authorization": f"Bearer {ARGS.key}"},
                             enable_sensitive_data=True, service_name="maf-tests")

    async def traceparent(request):
        inject(request.headers)

    http = httpx2.AsyncClient(event_hooks={"request": [traceparent]}) if ARGS.propagate \
        else None
    client = OpenAIChatCompletionClient(
        model=ARGS.model, async_client=AsyncOpenAI(base_url=ARGS.base_url, api_key=ARGS.key,
                                                   http_client=http, max_retries=0))
    agent = Agent(client=client, name=ARGS.name, instructions="Use the tools.",
                  tools=[tool(get_weather)], default_options={"max_tokens": 16})
    reply = "".join([u.text async for u in agent.run(ARGS.prompt, stream=True)])
    from opentelemetry import metrics, trace

    trace.get_tracer_provider().shutdown()  # flushes the spans to the console
    metrics.get_meter_provider().shutdown()
    return reply


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    for name in ("--console", "--key", "--base-url", "--model", "--name"):
        parser.add_argument(name, required=True)
    parser.add_argument("--prompt", default="What is the weather in Cebu?")
    parser.add_argument("--raise", dest="raise_", action="store_true")
    parser.add_argument("--propagate", action="store_true")
    ARGS = parser.parse_args()
    print(asyncio.run(main()))
