// Tanglaw playground: streams a chat over /ws/chat/ (frames described in docs/decisions.md).
// Model output is untrusted: it becomes HTML only through markdown.js (sanitised allow-list).
import { el } from "./dom.js";
import { renderMarkdown } from "./markdown.js";

for (const body of document.querySelectorAll(".msg-assistant .body")) {
  renderMarkdown(body, body.textContent);
}

const form = document.getElementById("composer");
const picker = document.getElementById("agent-picker");
// on a phone the conversations are a drawer above the chat, closed until asked for
const drawer = document.querySelector("[data-drawer]");
if (drawer && window.matchMedia("(max-width: 800px)").matches) drawer.open = false;

if (picker) {
  picker.addEventListener("change", () => {
    window.location.search = `?agent=${encodeURIComponent(picker.value)}`;
  });
}

if (form) {
  const transcript = document.getElementById("transcript");
  const input = document.getElementById("message");
  const send = document.getElementById("send");
  const stop = document.getElementById("stop");
  const regenerate = document.getElementById("regenerate");
  const status = document.getElementById("status");
  let conversationId = form.dataset.conversation ? Number(form.dataset.conversation) : null;
  let current = null; // {body, el} of the assistant message being streamed
  let version = null; // "n of n" while a regenerate streams its answer
  const cards = new Map();
  let socket = null;
  let queue = [];

  const add = (node) => {
    document.getElementById("transcript-empty")?.remove();
    transcript.append(node);
    node.scrollIntoView({ block: "end" });
    return node;
  };
  // the stored conversation is what the server regenerates from, so this works after a reload
  const lastQuestion = () => [...transcript.querySelectorAll(".msg-user")].pop() || null;
  const busy = (on) => {
    send.disabled = on;
    stop.disabled = !on;
    regenerate.disabled = on || conversationId === null || !lastQuestion();
    status.textContent = on ? "Generating…" : "";
  };
  let waiting = 0; // tool calls waiting for someone's approval
  const waitingStatus = () => {
    status.textContent = waiting ? "Waiting for your approval…" : "Generating…";
  };
  // A regenerate replaces the last answer: fold it (tool cards and badges too) into the
  // question's "Previous versions", as the page shows a stored conversation.
  // Returns the number of the answer to come.
  const foldLastAnswer = () => {
    const question = lastQuestion();
    if (!question) return 1;
    let versions = question.nextElementSibling;
    if (!versions || !versions.matches("details.versions")) {
      versions = el("details", "versions");
      versions.append(el("summary"));
      question.after(versions);
    }
    const answer = [];
    for (let node = versions.nextElementSibling; node; node = node.nextElementSibling) answer.push(node);
    if (answer.length) {
      answer.forEach((node) => node.querySelector(".who .version")?.remove());
      const wrapper = el("div", "previous");
      wrapper.append(el("div", "who"), ...answer);
      versions.append(wrapper);
    }
    const previous = versions.querySelectorAll(":scope > .previous");
    const total = previous.length + 1;
    previous.forEach((node, i) => { node.querySelector(".who").textContent = `Version ${i + 1} of ${total}`; });
    versions.querySelector("summary").textContent = `Previous versions (${previous.length})`;
    if (!previous.length) versions.remove();
    return total;
  };
  const assistant = () => {
    if (!current) {
      const box = el("div", "msg msg-assistant");
      box.append(el("div", "who", picker ? picker.selectedOptions[0].text.split(" — ")[0] : "Agent"));
      const body = el("div", "body");
      box.append(body);
      current = { el: add(box), body, raw: "", pending: false };
    }
    return current;
  };

  // a tool call's arguments labelled, one per line (raw text when they are not an object)
  const argumentsList = (raw) => {
    let args = null;
    try { args = JSON.parse(raw || "{}"); } catch { args = null; }
    if (!args || typeof args !== "object" || Array.isArray(args)) return el("pre", "json", raw);
    const list = el("dl", "arguments");
    const keys = Object.keys(args);
    if (!keys.length) list.append(el("dt", "", "arguments"), el("dd", "", "none"));
    for (const key of keys) {
      const value = args[key];
      list.append(el("dt", "", key),
                  el("dd", "", typeof value === "string" ? value : JSON.stringify(value, null, 1)));
    }
    return list;
  };
  // a new conversation appears at the top of the list at once, as it will after a reload
  const listConversation = (id) => {
    const list = document.getElementById("conversation-list");
    if (!list || list.querySelector(`a[href="?c=${id}"]`)) return;
    list.querySelector("li.muted")?.remove();
    const question = lastQuestion();
    const title = (question ? question.querySelector(".body").textContent : "").trim();
    const item = el("li");
    const link = el("a", "", title.length > 40 ? `${title.slice(0, 39)}…` : title || "(untitled)");
    link.href = `?c=${id}`;
    link.setAttribute("aria-current", "page");
    list.querySelectorAll("a[aria-current]").forEach((a) => a.removeAttribute("aria-current"));
    const agentName = picker ? picker.selectedOptions[0].text.split(" — ")[0] : "";
    item.append(link, el("br"), el("small", "muted", `${agentName} · just now`));
    list.prepend(item);
    // the list refreshes itself every 20 s (htmx): from now on with this one current
    const refresh = list.getAttribute("hx-get");
    if (refresh) list.setAttribute("hx-get", refresh.replace(/([?&]c=)[^&]*/, `$1${id}`));
    // and it can be renamed or deleted right away
    const head = document.getElementById("conversation-head");
    if (head) {
      head.querySelectorAll("form[data-action]").forEach((f) => {
        f.action = f.dataset.action.replace("ID", String(id));
      });
      const field = head.querySelector("input[name=title]");
      if (field) field.value = title.slice(0, 60);
      head.hidden = false;
    }
    const summary = document.querySelector("[data-drawer] > summary");
    if (summary) summary.textContent = `Conversations (${list.querySelectorAll("li").length})`;
  };

  const handlers = {
    turn_started(f) {
      if (conversationId === null) listConversation(f.conversation_id);
      conversationId = f.conversation_id;
      form.dataset.conversation = String(conversationId);
      if (picker) picker.disabled = true;
      history.replaceState(null, "", `?c=${conversationId}`);
      if (f.regenerate) {
        current = null;
        const total = foldLastAnswer();
        version = `${total} of ${total}`;
      }
    },
    delta(f) {
      const target = assistant();
      target.raw += f.text;
      if (!target.pending) {  // re-render at most once a frame
        target.pending = true;
        requestAnimationFrame(() => { target.pending = false; renderMarkdown(target.body, target.raw); });
      }
    },
    tool_call(f) {
      current = null;
      const card = el("details", "tool-card");
      card.open = true;
      const summary = el("summary");
      summary.append("Tool call ", el("code", "", f.name), " ");
      const state = el("small", "muted", "running…");
      summary.append(state);
      card.append(summary, argumentsList(f.arguments));
      cards.set(f.id, { card, state });
      add(card);
    },
    approval_required(f) {
      const entry = cards.get(f.id);
      if (!entry) return;
      entry.state.textContent = "needs your approval";
      entry.waiting = true;
      waiting += 1;
      waitingStatus();
      const row = el("div", "actions");
      for (const [label, type] of [["Approve", "approve"], ["Deny", "deny"]]) {
        const button = el("button", type === "deny" ? "secondary" : "", label);
        button.type = "button";
        button.addEventListener("click", () => {
          socket.send(JSON.stringify({ type, tool_call_id: f.id }));
          row.remove();
          entry.state.textContent = type === "deny" ? "denying…" : "approved, running…";
        });
        row.append(button);
      }
      entry.card.append(row);
      row.querySelector("button").focus();
    },
    tool_result(f) {
      const entry = cards.get(f.id);
      if (!entry) return;
      if (entry.waiting) {
        entry.waiting = false;
        waiting = Math.max(0, waiting - 1);
        waitingStatus(); // the turn goes on until its done frame
      }
      const outcome = f.ok ? "ok" : f.denied ? "denied" : "failed";
      entry.state.textContent = `${outcome} · ${Math.round(f.ms)} ms`;
      entry.card.classList.add(outcome === "ok" ? "ok" : outcome);
      const result = el("div", "tool-result");
      result.append(el("small", "muted", f.ok ? "Result" : f.denied ? "Denied" : "Error"),
                    el("pre", "json", f.summary));
      entry.card.append(result);
      entry.card.open = false;
    },
    route(f) {
      const what = f.escalation ? "⇪ escalated to" : f.method ? "↪ routed to" : "↪ fell back to";
      add(el("div", f.escalation ? "route-badge escalation" : "route-badge",
             `${what} ${f.agent}: ${f.reason}`));
    },
    error(f) { add(el("div", "error-line", `⚠ ${f.message}`)); if (!current) busy(false); },
    done(f) {
      const target = assistant();
      renderMarkdown(target.body, target.raw ?? target.body.textContent);
      const m = f.metrics || {};
      const fmt = (v, unit) => (v === null || v === undefined ? "—" : `${Math.round(v)}${unit}`);
      const timings = target.el.appendChild(el("div", "timings",
        `TTFT ${fmt(m.ttft_ms, " ms")} · ${m.tokens_per_s ?? "—"} tok/s · total ${fmt(m.total_ms, " ms")}` +
        ` · ${m.tokens_in ?? "—"} in / ${m.tokens_out ?? "—"} out` + (f.incomplete ? " · incomplete" : "")));
      if (/^[0-9a-f]{32}$/.test(f.trace_id || "")) {  // the turn's trace, when one was kept
        const link = el("a", "", "Trace");
        link.href = `/traces/${f.trace_id}/`;
        timings.append(" · ", link);
      }
      if (f.incomplete) target.el.classList.add("incomplete");
      if (version) target.el.querySelector(".who").append(" ", el("small", "muted version", `· ${version}`));
      version = null;
      current = null;
      waiting = 0;
      busy(false);
      input.focus();
    },
  };

  const connect = () => {
    const scheme = window.location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${window.location.host}${form.dataset.ws}`);
    socket.addEventListener("open", () => {
      queue.forEach((m) => socket.send(m));
      queue = [];
      if (!current) busy(false);  // ready: Send is enabled once the socket is open
    });
    socket.addEventListener("message", (event) => {
      const frame = JSON.parse(event.data);
      (handlers[frame.type] || (() => {}))(frame);
    });
    socket.addEventListener("close", (event) => {
      if (event.code === 4401) {
        status.textContent = "Your session ended. Sign in again.";
        send.disabled = true;
        return;
      }
      send.disabled = true;
      status.textContent = "Reconnecting…";
      setTimeout(connect, 1000);
    });
  };
  connect();

  const submit = (text) => {
    if (!text.trim()) return;
    add(el("div", "msg msg-user")).append(el("div", "who", "You"), el("div", "body", text));
    current = null;
    busy(true);
    const frame = JSON.stringify({
      type: "user_message", agent_id: Number(form.dataset.agent),
      conversation_id: conversationId, text,
    });
    if (socket.readyState === WebSocket.OPEN) socket.send(frame); else queue.push(frame);
  };

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value;
    input.value = "";
    submit(text);
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  stop.addEventListener("click", () => {
    socket.send(JSON.stringify({ type: "stop", conversation_id: conversationId }));
  });
  regenerate.addEventListener("click", () => {
    if (conversationId === null) return;
    current = null;
    busy(true);
    const frame = JSON.stringify({ type: "regenerate", conversation_id: conversationId });
    if (socket.readyState === WebSocket.OPEN) socket.send(frame); else queue.push(frame);
  });
  input.focus();
}
