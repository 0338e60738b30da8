// Compare: one message to several targets, their replies streamed side by side from
// POST /api/compare (Server-Sent Events; frames in evals/compare.py). Model output is
// untrusted: it becomes HTML only through markdown.js (sanitised allow-list).
import { el } from "./dom.js";
import { renderMarkdown } from "./markdown.js";

const form = document.getElementById("compare-form");


const ms = (value) => {
  if (value === null || value === undefined) return "—";
  return value < 1000 ? `${Math.round(value)} ms` : `${(value / 1000).toFixed(2)} s`;
};

// a field the person typed: a number when it reads as one, else the text itself, so the
// server names the field in its error rather than the page guessing
const number = (text, whole) => {
  const value = text.trim();
  if (!value) return undefined;
  if (whole ? /^\d+$/.test(value) : Number.isFinite(Number(value))) return Number(value);
  return value;
};

if (form) {
  const csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  const text = document.getElementById("compare-text");
  const send = document.getElementById("compare-send");
  const stop = document.getElementById("compare-stop");
  const status = document.getElementById("compare-status");
  const errors = document.getElementById("compare-errors");
  const board = document.getElementById("compare-columns");
  const keepHistory = document.getElementById("compare-keep-history");
  const history = JSON.parse(form.dataset.history || "[]");
  const canSave = form.dataset.canSave === "1";
  let controller = null;

  const post = (url, body) => fetch(url, {
    method: "POST", credentials: "same-origin", signal: controller?.signal,
    headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
    body: JSON.stringify(body),
  });

  const showErrors = (detail, fields) => {
    errors.replaceChildren(el("p", "", detail));
    const list = el("ul");
    for (const [field, messages] of Object.entries(fields || {})) {
      const item = el("li");
      item.append(el("code", "", field), `: ${[].concat(messages).join(" ")}`);
      list.append(item);
    }
    if (list.children.length) errors.append(list);
    errors.hidden = false;
  };

  const targets = () => {
    const out = [];
    for (const row of form.querySelectorAll("[data-row]")) {
      const i = row.dataset.row;
      const choice = form.elements[`target-${i}`].value;
      if (!choice) continue;
      const [kind, pk] = choice.split(":");
      const spec = kind === "agent" ? { agent_id: Number(pk) }
        : { backend_id: Number(pk), model: form.elements[`model-${i}`].value.trim() };
      const params = {};
      const temperature = number(form.elements[`temperature-${i}`].value, false);
      const most = number(form.elements[`max_tokens-${i}`].value, true);
      if (temperature !== undefined) params.temperature = temperature;
      if (most !== undefined) params.max_tokens = most;
      if (Object.keys(params).length) spec.params = params;
      out.push(spec);
    }
    return out;
  };

  const columns = new Map();

  const column = (info) => {
    const card = el("article", "compare-column");
    card.dataset.column = info.column;
    const head = el("header");
    head.append(el("h2", "", info.label));
    const params = Object.entries(info.params || {}).map(([k, v]) => `${k} ${v}`).join(", ");
    head.append(el("p", "muted", `${info.model} on ${info.backend}${params ? ` · ${params}` : ""}`));
    const message = el("div", "msg msg-assistant");
    const body = el("div", "body", "");
    message.append(body);
    const tools = el("ul", "compare-tools");
    const timings = el("p", "timings", "Waiting for the first token…");
    const actions = el("div", "actions");
    card.append(head, message, tools, timings, actions);
    board.append(card);
    const state = { info, card, body, message, tools, timings, actions, text: "", first: null,
      errors: new Set() };
    columns.set(info.column, state);
    return state;
  };

  const finish = (state, frame) => {
    const m = frame.metrics || {};
    if (state.text) renderMarkdown(state.body, state.text);
    else if (!frame.error) state.body.textContent = "(no text)";
    if (frame.error) {
      state.card.classList.add("failed");
      if (!state.errors.has(frame.error)) state.message.after(el("p", "error-text", frame.error));
    }
    const tokens = m.tokens_out === null || m.tokens_out === undefined ? "—" : m.tokens_out;
    const rate = m.tokens_per_s === null || m.tokens_per_s === undefined ? "—" : m.tokens_per_s;
    state.timings.textContent = `TTFT ${ms(m.ttft_ms)} · ${rate} tok/s · ${tokens} tokens · ` +
      `total ${ms(m.total_ms)}${frame.incomplete ? " · incomplete" : ""}`;
    state.timings.dataset.done = "1";
    if (frame.conversation_id) {
      const go = el("button", "secondary", "Continue with this");
      go.type = "button";
      go.addEventListener("click", async () => {
        go.disabled = true;
        const response = await post(form.dataset.continue, { conversation_id: frame.conversation_id });
        const answer = await response.json().catch(() => ({}));
        if (response.ok) window.location.href = answer.url;
        else { go.disabled = false; showErrors(answer.detail || "Could not continue.", answer.errors); }
      });
      state.actions.append(go);
    }
    const saved = Object.fromEntries(Object.entries(state.info.params || {})
      .filter(([k]) => k === "temperature" || k === "max_tokens"));
    if (canSave && !frame.error && (state.info.quick || Object.keys(saved).length)) {
      const save = el("button", "secondary outline",
        state.info.quick ? "Save as an agent" : `Save these settings as ${state.info.agent}'s next version`);
      save.type = "button";
      save.addEventListener("click", async () => {
        save.disabled = true;
        const response = await post(form.dataset.save, { agent_id: state.info.agent_id, params: saved });
        const answer = await response.json().catch(() => ({}));
        if (response.ok) {
          const link = el("a", "", `Saved: ${answer.name}, version ${answer.version}`);
          link.href = answer.url;
          save.replaceWith(link);
        } else { save.disabled = false; showErrors(answer.detail || "Not saved.", answer.errors); }
      });
      state.actions.append(save);
    }
    if (frame.trace_id) {
      const trace = el("a", "", "Trace");
      trace.href = form.dataset.trace.replace("TRACE", frame.trace_id);
      state.actions.append(trace);
    }
  };

  const handle = (frame, started) => {
    if (frame.type === "compare_started") {
      board.replaceChildren();
      columns.clear();
      frame.columns.forEach(column);
      board.scrollIntoView({ block: "start", behavior: "smooth" });
      status.textContent = `Asking ${frame.columns.length} targets…`;
      return;
    }
    if (frame.type === "compare_done") {
      status.textContent = "Done.";
      return;
    }
    const state = columns.get(frame.column);
    if (!state) return;
    if (frame.type === "delta") {
      if (state.first === null) {
        state.first = performance.now() - started;
        state.timings.textContent = `First token after ${ms(state.first)}…`;
      }
      state.text += frame.text;
      state.body.textContent = state.text;
    } else if (frame.type === "tool_call") {
      state.tools.append(el("li", "", `Tool call ${frame.name}`));
    } else if (frame.type === "tool_result") {
      state.tools.append(el("li", frame.ok ? "" : "error-text", frame.ok ? "Tool answered" : "Tool failed"));
    } else if (frame.type === "route") {
      state.tools.append(el("li", "muted", `↪ ${frame.agent}: ${frame.reason || ""}`));
    } else if (frame.type === "error") {
      // a failure mid-reply: the column says why, beside what it had written
      state.errors.add(frame.message);
      state.card.classList.add("failed");
      state.message.after(el("p", "error-text", frame.message));
    } else if (frame.type === "column_done") {
      finish(state, frame);
    }
  };

  const run = async (event) => {
    event.preventDefault();
    errors.hidden = true;
    const body = { text: text.value, targets: targets() };
    if (history.length && (!keepHistory || keepHistory.checked)) body.messages = history;
    controller = new AbortController();
    send.disabled = true;
    stop.disabled = false;
    status.textContent = "Starting…";
    const started = performance.now();
    try {
      const response = await post(form.dataset.api, body);
      if (!response.ok) {
        const answer = await response.json().catch(() => ({}));
        showErrors(answer.detail === "invalid input" ? "Nothing was sent:" : (answer.detail || `The console answered ${response.status}.`), answer.errors);
        status.textContent = "";
        return;
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const chunk = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          for (const line of chunk.split("\n")) {
            if (line.startsWith("data: ")) handle(JSON.parse(line.slice(6)), started);
          }
        }
      }
    } catch (error) {
      if (error.name !== "AbortError") showErrors(`The comparison stopped: ${error.message}`);
      status.textContent = "Stopped: what each target had written is kept.";
      for (const state of columns.values()) {
        if (!state.timings.dataset.done) state.timings.textContent = "Stopped.";
      }
    } finally {
      send.disabled = false;
      stop.disabled = true;
      controller = null;
    }
  };

  form.addEventListener("submit", run);
  stop.addEventListener("click", () => controller?.abort());
  text.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
  });
}
