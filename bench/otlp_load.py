"""OTLP/HTTP senders for `make bench`: batches of MAF-shaped spans (an invoke_agent with
its chat, execute_tool and chat children, repeated) posted as protobuf to /v1/traces,
paced to a rate or as fast as the console takes them.

    python bench/otlp_load.py URL KEY --seconds 20 [--rate 2000] [--batch 100]
        [--senders 4] --out FILE

Writes {"sent": spans accepted, "refused": spans answered 429/503, "errors": [...],
"seconds": wall time}.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

SHAPE = [("invoke_agent bench-agent", None, "invoke_agent"), ("chat qwen", 0, "chat"),
         ("execute_tool get_weather", 0, "execute_tool"), ("chat qwen", 0, "chat")]


def payload(spans: int) -> bytes:
    request = ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    resource.resource.attributes.append(KeyValue(key="service.name",
                                                 value=AnyValue(string_value="bench-app")))
    scope = resource.scope_spans.add()
    scope.scope.name = "agent_framework"
    now = time.time_ns()
    while len(scope.spans) < spans:
        trace_id, ids = os.urandom(16), [os.urandom(8) for _ in SHAPE]
        for i, (name, parent, operation) in enumerate(SHAPE):
            span = scope.spans.add(trace_id=trace_id, span_id=ids[i], name=name, kind=1,
                                   start_time_unix_nano=now + i * 1_000_000,
                                   end_time_unix_nano=now + (i + 1) * 5_000_000)
            if parent is not None:
                span.parent_span_id = ids[parent]
            span.attributes.extend([
                KeyValue(key="gen_ai.operation.name", value=AnyValue(string_value=operation)),
                KeyValue(key="gen_ai.request.model", value=AnyValue(string_value="qwen")),
                KeyValue(key="gen_ai.usage.input_tokens", value=AnyValue(int_value=40)),
                KeyValue(key="gen_ai.usage.output_tokens", value=AnyValue(int_value=12))])
            if operation == "invoke_agent":
                span.attributes.append(KeyValue(key="gen_ai.agent.name",
                                                value=AnyValue(string_value="bench-agent")))
    return request.SerializeToString()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("key")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rate", type=float, default=0, help="spans/s; 0: as fast as taken")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    totals = {"sent": 0, "refused": 0, "errors": []}
    lock = threading.Lock()
    started = time.monotonic()
    stop = started + args.seconds
    per_sender = args.rate / args.senders if args.rate else 0

    def sender() -> None:
        headers = {"Authorization": f"Bearer {args.key}",
                   "Content-Type": "application/x-protobuf"}
        with httpx.Client(timeout=30) as client:
            n = 0
            while time.monotonic() < stop:
                if per_sender:  # paced: the n-th batch is due at n*batch/rate
                    due = started + n * args.batch / per_sender
                    if due > time.monotonic():
                        time.sleep(due - time.monotonic())
                body = payload(args.batch)
                answer = client.post(args.url + "/v1/traces", content=body, headers=headers)
                with lock:
                    if answer.status_code == 200:
                        totals["sent"] += args.batch
                    elif answer.status_code in (429, 503):
                        totals["refused"] += args.batch
                    elif len(totals["errors"]) < 5:
                        totals["errors"].append(f"{answer.status_code} {answer.text[:200]}")
                n += 1

    threads = [threading.Thread(target=sender) for _ in range(args.senders)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    totals["seconds"] = round(time.monotonic() - started, 2)
    args.out.write_text(json.dumps(totals))


if __name__ == "__main__":
    main()
