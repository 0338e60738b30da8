"""Render a results file into the results section of docs/benchmarks.md."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"
NAMES = {"direct": "direct to the backend", "tanglaw_ws": "Tanglaw WebSocket",
         "tanglaw_sse": "Tanglaw HTTP (SSE)", "tanglaw_gateway": "Tanglaw gateway pass-through",
         "litellm": "LiteLLM proxy"}


def ms(value) -> str:
    return "–" if value is None else f"{value:.1f}"


def mark(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**missed**")


def goals(r: dict) -> list[tuple[str, bool | None, str]]:
    """Issue 13's goals (the hot path), then the standing ones."""
    out = []
    latency = r.get("latency") or {}

    def added(c: str, path: str) -> dict:
        return ((latency.get(c) or {}).get(path) or {}).get("added_ttft") or {}

    def at_most(value, limit) -> bool:
        return value is not None and value <= limit

    ws1 = added("1", "tanglaw_ws")
    if ws1:
        out.append(("WebSocket added TTFT ≤ 3 ms p50 and ≤ 6 ms p99 at concurrency 1",
                    at_most(ws1["p50"], 3) and at_most(ws1["p99"], 6),
                    f"p50 {ms(ws1['p50'])} ms, p99 {ms(ws1['p99'])} ms"))
    for c, limit in (("16", 20), ("64", 100)):
        ws, theirs = added(c, "tanglaw_ws"), added(c, "litellm")
        if ws:
            ok = at_most(ws["p50"], limit)
            detail = f"{ms(ws['p50'])} ms"
            if theirs and theirs.get("p50") is not None:
                ok = ok and ws["p50"] is not None and ws["p50"] <= theirs["p50"] / 5
                detail += f" (LiteLLM {ms(theirs['p50'])} ms)"
            out.append((f"WebSocket added TTFT p50 ≤ {limit} ms at concurrency {c}, and ≤ ⅕ "
                        f"of LiteLLM's", ok, detail))
    for c, within in (("1", "1 ms"), ("64", "10 %")):
        ws, sse = added(c, "tanglaw_ws"), added(c, "tanglaw_sse")
        if ws and sse and ws.get("p50") is not None and sse.get("p50") is not None:
            gap = sse["p50"] - ws["p50"]
            ok = gap <= 1 if within == "1 ms" else gap <= 0.1 * max(ws["p50"], 0.0)
            out.append((f"SSE added TTFT p50 within {within} of the WebSocket's at "
                        f"concurrency {c}", ok,
                        f"SSE {ms(sse['p50'])} ms vs WebSocket {ms(ws['p50'])} ms"))
    relay = r.get("relay") or {}
    for label, limit, what in (("one_token_per_frame", 150, "one token per frame"),
                               ("batched", 50, "a fast stream, merged frames")):
        entry = relay.get(label)
        if entry:
            cost = entry["cpu_ms_per_1000_tokens"]
            out.append((f"Tanglaw CPU per 1,000 relayed tokens ≤ {limit} ms ({what})",
                        at_most(cost, limit) and not entry["lost"],
                        f"{ms(cost)} ms ({entry['tokens']:,} tokens, {entry['streams']} "
                        f"streams, lost {entry['lost']})"))
    out += gateway_goals(r, added, at_most)
    out += trace_goals(r, at_most)
    probing = r.get("probing") or {}
    if probing.get("loop_lag_ms"):
        lag = probing["loop_lag_ms"]["p99"]
        out.append((f"event-loop lag p99 ≤ 20 ms while probing {probing['backends']} "
                    f"backends", at_most(lag, 20), f"{ms(lag)} ms"))
    fleet = r.get("fleet") or {}
    if fleet.get("loop_lag_ms"):
        lag = fleet["loop_lag_ms"]["p99"]
        out.append((f"{fleet['monitors']} monitors, {fleet['hosts']} fleet hosts: every target "
                    f"scraped once per interval, loop lag p99 ≤ 20 ms",
                    fleet["every_target_once_per_interval"] and at_most(lag, 20),
                    f"{fleet['scrapes_per_target']['min']}–"
                    f"{fleet['scrapes_per_target']['max']} scrapes per target in "
                    f"{fleet['intervals']} intervals; lag p99 {ms(lag)} ms"))
    effect = probing.get("chat_beside_probing") or {}
    if effect.get("quiet") and effect.get("probing"):
        extra = effect["probing"]["added_ttft_p99_ms"] - effect["quiet"]["added_ttft_p99_ms"]
        out.append(("chat added TTFT p99 ≤ +1 ms while 200 backends are probed",
                    extra <= 1, f"{extra:+.1f} ms (back-to-back rounds in another process)"))
    streams = r.get("streams")
    if streams:
        best = streams["max_sustained"]
        out.append(("≥ 200 concurrent WebSocket streams, nothing lost", best >= 200,
                    f"{best} sustained (backend gap {streams['backend_gap_ms']:g} ms, limit "
                    f"{streams['gap_limit_ms']:g} ms)"))
    persistence = r.get("persistence")
    if persistence:
        out.append(("SQL statements per turn do not grow with the reply",
                    persistence["constant_statements"],
                    f"{persistence['short']['statements_per_turn']:g} (20 tokens) vs "
                    f"{persistence['long']['statements_per_turn']:g} (2,000 tokens)"))
    dashboards = r.get("dashboards")
    if dashboards:
        worst = max(p["p95_ms"] for p in dashboards["pages"].values())
        out.append((f"dashboard pages p95 ≤ 50 ms at {dashboards['samples']:,} samples and "
                    f"{dashboards['audit_events']:,} audit events", dashboards["met"],
                    f"slowest p95 {worst:.1f} ms"))
    return out


def gateway_goals(r: dict, added, at_most) -> list[tuple[str, bool | None, str]]:
    """Issue 14's: the gateway pass-through beside LiteLLM."""
    out: list[tuple[str, bool | None, str]] = []
    gw1 = added("1", "tanglaw_gateway")
    if gw1:
        out.append(("Gateway added TTFT p50 ≤ 2 ms at concurrency 1", at_most(gw1["p50"], 2),
                    f"{ms(gw1['p50'])} ms"))
    for c in ("1", "16", "64"):
        gw, theirs = added(c, "tanglaw_gateway"), added(c, "litellm")
        if gw and theirs and theirs.get("p50") is not None and gw.get("p50") is not None:
            out.append((f"Gateway added TTFT p50 ≤ ⅓ of LiteLLM's at concurrency {c}",
                        gw["p50"] <= theirs["p50"] / 3,
                        f"{ms(gw['p50'])} ms vs LiteLLM {ms(theirs['p50'])} ms"))
    g = r.get("gateway") or {}
    for label, entry in (g.get("relay") or {}).items():
        cost = entry["cpu_ms_per_1000_tokens"]
        what = "one token per chunk" if label == "one_token_per_frame" else "a fast stream"
        out.append((f"Gateway CPU per 1,000 relayed tokens ≤ 100 ms ({what})",
                    at_most(cost, 100) and not entry["lost"],
                    f"{ms(cost)} ms ({entry['tokens']:,} tokens, {entry['streams']} streams, "
                    f"lost {entry['lost']})"))
    best = (g.get("throughput") or {}).get("best_rps_within_100ms") or {}
    if "tanglaw_gateway" in best:
        ours, theirs = best["tanglaw_gateway"], best.get("litellm")
        out.append(("Gateway non-streamed requests/s at ≤ 100 ms added p99 higher than "
                    "LiteLLM's", None if theirs is None and ours is None else
                    (ours or 0) > (theirs or 0),
                    f"{ours if ours is not None else '–'} vs LiteLLM "
                    f"{theirs if theirs is not None else '–'} requests/s"))
    header = g.get("overhead_header") or {}
    if header.get("difference_ms") is not None:
        out.append(("x-tanglaw-overhead-ms within 1 ms of the client-side added TTFT",
                    header["difference_ms"] <= 1,
                    f"header p50 {ms(header['header_p50_ms'])} ms, client "
                    f"{ms(header['client_added_ttft_p50_ms'])} ms "
                    f"({header['requests']} pairs at concurrency 1)"))
    return out


def trace_goals(r: dict, at_most) -> list[tuple[str, bool | None, str]]:
    """Issue 15's: OTLP ingest beside chat, and the trace pages over 1 M spans."""
    t = r.get("traces") or {}
    out: list[tuple[str, bool | None, str]] = []
    ingest = t.get("ingest")
    if ingest:
        paced, flat = ingest["paced_2000"], ingest["flat_out"]
        out.append(("OTLP ingest on SQLite ≥ 2,000 spans/s sustained",
                    max(paced["stored_per_s"], flat["stored_per_s"]) >= 2000
                    and paced["stored"] >= paced["sent"],
                    f"paced at 2,000/s: {paced['stored_per_s']:,}/s stored "
                    f"({paced['stored']:,} of {paced['sent']:,}); flat out "
                    f"{flat['stored_per_s']:,}/s ({flat['refused']:,} refused)"))
        change = ingest["ttft_p99_change_ms"]
        out.append(("Chat added TTFT p99 unchanged within 1 ms while ingesting",
                    at_most(change, 1),
                    f"{ms(ingest['quiet']['added_ttft_p99_ms'])} → "
                    f"{ms(ingest['ingesting']['added_ttft_p99_ms'])} ms ({change:+.2f})"))
    pages = t.get("pages")
    if pages:
        worst = max(pages["pages"].items(), key=lambda kv: kv[1]["p95_ms"])
        out.append((f"Trace list and view p95 ≤ 50 ms over {pages['spans']:,} spans",
                    pages["met"], f"slowest: {worst[0]} p95 {ms(worst[1]['p95_ms'])} ms"))
    return out


def trace_section(r: dict) -> list[str]:
    pages = (r.get("traces") or {}).get("pages")
    if not pages:
        return []
    lines = [f"### Trace pages over {pages['spans']:,} spans ({pages['traces']:,} traces)", "",
             "Server time through Django's test client, SQLite.", "",
             "| page | p50 ms | p95 ms | max ms |", "|---|---|---|---|"]
    for name, p in pages["pages"].items():
        lines.append(f"| {name} | {ms(p['p50_ms'])} | {ms(p['p95_ms'])} | {ms(p['max_ms'])} |")
    return [*lines, ""]


def gateway_section(r: dict) -> list[str]:
    g = (r.get("gateway") or {}).get("throughput")
    if not g:
        return []
    paths = [p for p in ("direct", "tanglaw_gateway", "litellm")
             if p in next(iter(g["levels"].values()))]
    lines = ["### Gateway: non-streamed requests per second", "",
             "An instant backend (8 tokens, no delay), non-streamed chat completions from "
             "one client process; requests/s and p99 latency (ms) per concurrency. The goal "
             "counts a level when its p99 is at most 100 ms above direct's and nothing "
             "failed.", "",
             "| concurrency | " + " | ".join(NAMES[p] for p in paths) + " |",
             "|---|" + "---|" * len(paths)]
    for c, row in g["levels"].items():
        cells = [f"{row[p]['rps']:g}/s, p99 {ms(row[p]['p99'])}"
                 + (f" ({row[p]['errors']} failed)" if row[p]["errors"] else "")
                 for p in paths]
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def ratio(default, other) -> str:
    """How many times better `other` is than the default (lower is better); – when
    either is missing or the other's is not above zero."""
    if default is None or other is None or other <= 0:
        return "–"
    return f"{default / other:.2f}×"


def servers_section(r: dict) -> list[str]:
    """The Tanglaw paths under each ASGI server, measured in the same rounds."""
    s = r.get("servers")
    if not s or len(s.get("servers") or []) < 2:
        return []
    default = s["default"]
    lines = ["### ASGI servers", "",
             f"The Tanglaw paths under each server (`bench/run.py --servers "
             f"{' '.join(s['servers'])}`; {default} is the default and the tables above), "
             "each a `manage.py serve` on the same data directory, their paths interleaved "
             "with the others in the same rounds. Added TTFT is against direct in the same "
             "round; CPU is the server's process tree (user + system) over the measured "
             "requests, per 1,000 tokens relayed; medians over rounds.", "",
             "| concurrency | server | WS added TTFT p50 | p99 | WS CPU ms / 1k tokens | "
             "SSE added TTFT p50 | p99 | SSE CPU ms / 1k tokens | lost |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c, by_server in s["latency"].items():
        for server, paths in by_server.items():
            ws, sse = paths.get("tanglaw_ws") or {}, paths.get("tanglaw_sse") or {}
            wa, sa = ws.get("added_ttft") or {}, sse.get("added_ttft") or {}
            lines.append(
                f"| {c} | {server} | {ms(wa.get('p50'))} | {ms(wa.get('p99'))} | "
                f"{ms(ws.get('cpu_ms_per_1000_tokens'))} | {ms(sa.get('p50'))} | "
                f"{ms(sa.get('p99'))} | {ms(sse.get('cpu_ms_per_1000_tokens'))} | "
                f"{(ws.get('lost') or 0) + (sse.get('lost') or 0)} |")
    lines += ["", f"Times better than {default} on each goal (its number ÷ the server's; "
              "above 1 is better):", "",
              "| concurrency | server | WS added TTFT p50 | WS CPU | SSE added TTFT p50 | "
              "SSE CPU |", "|---|---|---|---|---|---|"]
    for c, by_server in s["latency"].items():
        base = by_server.get(default) or {}
        for server, paths in by_server.items():
            if server == default:
                continue
            cells = []
            for kind in ("tanglaw_ws", "tanglaw_sse"):
                mine, theirs = base.get(kind) or {}, paths.get(kind) or {}
                cells += [ratio((mine.get("added_ttft") or {}).get("p50"),
                                (theirs.get("added_ttft") or {}).get("p50")),
                          ratio(mine.get("cpu_ms_per_1000_tokens"),
                                theirs.get("cpu_ms_per_1000_tokens"))]
            lines.append(f"| {c} | {server} | {' | '.join(cells)} |")
    return [*lines, ""]


def render(r: dict, name: str) -> str:
    m = r["machine"]
    v = m["versions"]
    lines = [
        f"Run `{r['command']}` at `{r['sha']}`, {r['started']} → {r['finished']}; raw numbers "
        f"in [`bench/results/{name}`](../bench/results/{name}).",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['os']}. "
        f"Python {v.get('python')}, Django {v.get('django')}, Channels {v.get('channels')}, "
        f"Daphne {v.get('daphne')}, uvicorn {v.get('uvicorn') or '–'}, granian "
        f"{v.get('granian') or '–'}, openai {v.get('openai')}, SQLite {v.get('sqlite')}, "
        f"LiteLLM {v.get('litellm') or 'not installed'}.",
        "",
        "### Goals",
        "",
        "| goal | result | measured |",
        "|---|---|---|",
    ]
    lines += [f"| {g} | {mark(ok)} | {detail} |" for g, ok, detail in goals(r)]
    b = r["backend"]
    lines += ["", "### Added latency (fast scripted backend: "
              f"TTFT {b['ttft_ms']:g} ms, {b['tokens']} tokens, {b['gap_ms']:g} ms apart)", ""]
    cap = r.get("backend_capacity")
    if cap:
        lines.append(f"Backend capacity: {cap['tokens_per_s']:,} tokens/s against "
                     f"{cap['applied_tokens_per_s']:,} applied at the highest concurrency "
                     f"(×{cap['ratio']}): {'ok' if cap['ok'] else '**below 10× — flagged**'}.")
        lines.append("")
    for c, row in (r.get("latency") or {}).items():
        lines += [f"**Concurrency {c}** (ms; medians of round medians over "
                  f"{row['direct']['requests']} requests per path)", "",
                  "| path | TTFT p50 | p90 | p99 | max | added TTFT p50 | added p99 | "
                  "token transit p50 | p99 | gap p50 | gap p99 | lost |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for path, s in row.items():
            added = s.get("added_ttft") or {}
            lines.append(
                f"| {NAMES[path]} | {ms(s['ttft']['p50'])} | {ms(s['ttft']['p90'])} | "
                f"{ms(s['ttft']['p99'])} | {ms(s['ttft']['max'])} | {ms(added.get('p50'))} | "
                f"{ms(added.get('p99'))} | {ms(s['transit']['p50'])} | "
                f"{ms(s['transit']['p99'])} | {ms(s['gap']['p50'])} | {ms(s['gap']['p99'])} | "
                f"{s['lost']} |")
        lines.append("")
    lines += servers_section(r)
    lines += gateway_section(r)
    lines += trace_section(r)
    llama = r.get("llamacpp")
    if llama:
        lines += [f"### Beside a real engine: llama.cpp's llama-server (tiny random-weight "
                  f"model, {llama['tokens']} tokens)", "",
                  "The same paths against the real server `make test` uses: what the added "
                  "milliseconds weigh beside an engine's own time.", ""]
        for c, row in llama["latency"].items():
            lines += [f"**Concurrency {c}** (ms; {row['direct']['requests']} requests per path)",
                      "", "| path | TTFT p50 | TTFT p99 | whole reply p50 | p99 | failed |",
                      "|---|---|---|---|---|---|"]
            for path, x in row.items():
                lines.append(f"| {NAMES[path]} | {ms(x['ttft']['p50'])} | {ms(x['ttft']['p99'])} "
                             f"| {ms(x['total']['p50'])} | {ms(x['total']['p99'])} | "
                             f"{x['failed']} |")
            lines.append("")
    streams = r.get("streams")
    if streams:
        lines += ["### Concurrent WebSocket streams", "",
                  f"Each stream: {streams['tokens_per_stream']} tokens "
                  f"{streams['backend_gap_ms']:g} ms apart. A level fails when a token is "
                  f"lost or reordered or a gap exceeds {streams['gap_limit_ms']:g} ms. "
                  f"Maximum sustained: **{streams['max_sustained']}**"
                  + (" (the highest level tried; the ramp stops there)"
                     if streams["levels"] and streams["levels"][-1]["ok"] else "") + ".", "",
                  "| streams | lost/reordered | gap p50 | gap p99 | gap max | "
                  "Tanglaw CPU ms per 1,000 tokens | ok |", "|---|---|---|---|---|---|---|"]
        for level in streams["levels"]:
            g = level["gap_ms"]
            lines.append(f"| {level['streams']} | {level['lost_or_reordered']} | {ms(g['p50'])} "
                         f"| {ms(g['p99'])} | {ms(g['max'])} | "
                         f"{level['cpu_ms_per_1000_tokens']} | {'yes' if level['ok'] else 'no'} |")
        lines.append("")
    p = r.get("persistence")
    if p:
        lines += ["### Persistence per turn", "",
                  "| reply | SQL statements | bytes written | of which the reply |",
                  "|---|---|---|---|"]
        for label in ("short", "long"):
            x = p[label]
            lines.append(f"| {x['tokens']} tokens | {x['statements_per_turn']:g} | "
                         f"{x['bytes_written_per_turn']:,} | {x['reply_bytes']:,} |")
        lines += ["", f"({p['note']}.) Bytes are what SQLite wrote (WAL pages of 4 KiB).", ""]
    pr = r.get("probing")
    if pr:
        effect = pr.get("chat_beside_probing") or {}
        quiet, busy = effect.get("quiet") or {}, effect.get("probing") or {}
        lines += ["### Probing", "",
                  f"{pr['backends']} backends per tick: tick p50 {ms(pr['tick_ms']['p50'])} ms, "
                  f"max {ms(pr['tick_ms']['max'])} ms; the probing loop's own lag p99 "
                  f"{ms(pr['loop_lag_ms']['p99'])} ms, max {ms(pr['loop_lag_ms']['max'])} ms "
                  f"({pr['healthy_per_tick']} healthy each tick).", ""]
        if quiet:
            lines += [f"A chat's added TTFT (WebSocket, concurrency 1) with a monitor process "
                      f"probing 200 backends back to back: p50 {ms(quiet['added_ttft_p50_ms'])} "
                      f"→ {ms(busy['added_ttft_p50_ms'])} ms, p99 "
                      f"{ms(quiet['added_ttft_p99_ms'])} → {ms(busy['added_ttft_p99_ms'])} ms.",
                      ""]
    d = r.get("dashboards")
    if d:
        lines += ["### Dashboards", "",
                  f"{d['samples']:,} raw samples, {d['rollups']:,} rollup buckets and "
                  f"{d['audit_events']:,} audit events (generated in "
                  f"{d['generate_s']['metrics']} s and {d['generate_s']['audit']} s). "
                  f"Server time of the page or API call:", "",
                  "| page | p50 ms | p95 ms | max ms |", "|---|---|---|---|"]
        for page, x in d["pages"].items():
            lines.append(f"| {page.replace('_', ' ')} (`{x['url']}`) | {x['p50_ms']} | "
                         f"{x['p95_ms']} | {x['max_ms']} |")
        lines.append("")
    a = r.get("audit")
    if a:
        lines += ["### Audit throughput (hash chain, signed checkpoint every "
                  f"{a['sqlite']['checkpoint_every']} events)", "",
                  "| database | writer threads | events/s | chain verifies |", "|---|---|---|---|"]
        for db, x in a.items():
            for run in x["runs"]:
                lines.append(f"| {db} | {run['threads']} | {run['events_per_s']:,} | "
                             f"{'yes' if run['chain_ok'] else 'NO'} |")
        lines.append("")
    for note in r.get("notes") or []:
        lines.append(f"- Note: {note}")
    return "\n".join(lines).rstrip() + "\n"


def write(results: dict, name: str) -> None:
    text = DOC.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{DOC} lacks the {START} / {END} markers")
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    DOC.write_text(f"{before}{START}\n{render(results, name)}{END}{after}")


if __name__ == "__main__":  # re-render from a results file: python bench/report.py FILE
    path = Path(sys.argv[1])
    write(json.loads(path.read_text()), path.name)
    print(re.sub(r"\n{3,}", "\n\n", render(json.loads(path.read_text()), path.name)))
