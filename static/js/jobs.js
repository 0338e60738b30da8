// Model pulls, live on every page: /ws/jobs/ sends a frame per progress step.
// The tray at the top lists running pulls; a models page also updates its job cards.
(() => {
  const tray = document.getElementById("jobs-tray");
  if (!tray) return;
  const fmtBytes = (b) => (b >= 1e9 ? `${(b / 1e9).toFixed(2)} GB` : `${(b / 1e6).toFixed(1)} MB`);
  const fmtEta = (s) => (s == null ? "" : s < 90 ? `${Math.round(s)} s left` : `${Math.round(s / 60)} min left`);
  const active = (state) => state === "queued" || state === "running";

  function line(frame) {
    const parts = [`${Math.round(frame.percent)} %`];
    if (frame.total_bytes) parts.push(`${fmtBytes(frame.completed_bytes)} of ${fmtBytes(frame.total_bytes)}`);
    if (frame.speed_bps) parts.push(`${fmtBytes(frame.speed_bps)}/s`);
    if (active(frame.state) && frame.eta_s != null) parts.push(fmtEta(frame.eta_s));
    parts.push(frame.error ? `${frame.detail} — ${frame.error}` : frame.detail);
    return parts.filter(Boolean).join(" · ");
  }

  function updateTray(frame) {
    let item = tray.querySelector(`[data-tray-job="${frame.id}"]`);
    if (!item) {
      item = document.createElement("div");
      item.className = "tray-job";
      item.dataset.trayJob = frame.id;
      item.innerHTML = '<span class="tray-label"></span> <progress max="100"></progress> <small></small>';
      tray.append(item);
    }
    item.querySelector(".tray-label").textContent = `Pull ${frame.model}: ${frame.state}`;
    item.querySelector("progress").value = frame.percent;
    item.querySelector("small").textContent = line(frame);
    item.classList.toggle("failed", frame.state === "failed");
    tray.hidden = !tray.querySelector(".tray-job");
    if (!active(frame.state)) setTimeout(() => { item.remove(); tray.hidden = !tray.querySelector(".tray-job"); }, 15000);
  }

  function updateCard(frame) {
    const list = document.getElementById("job-list");
    if (!list || String(frame.backend_id) !== list.dataset.backend) return;
    let card = list.querySelector(`[data-job-id="${frame.id}"]`);
    if (!card) {
      const empty = document.getElementById("no-jobs");
      if (empty) empty.remove();
      card = document.createElement("article");
      card.className = "job";
      card.dataset.jobId = frame.id;
      card.innerHTML = '<header class="actions"><strong></strong> <span class="job-state badge badge-grey"></span></header>' +
        '<progress class="job-bar" max="100"></progress><p class="job-detail muted"></p><div class="job-layers"></div>';
      card.querySelector("strong").textContent = frame.model;
      list.prepend(card);
    }
    const state = card.querySelector(".job-state");
    state.textContent = frame.state;
    state.className = `job-state badge ${frame.state === "succeeded" ? "badge-green" : frame.state === "failed" ? "badge-red" : "badge-grey"}`;
    card.querySelector(".job-bar").value = frame.percent;
    card.querySelector(".job-detail").textContent = line(frame);
    const layers = card.querySelector(".job-layers");
    layers.replaceChildren(...frame.layers.map((l) => {
      const row = document.createElement("div");
      row.className = "layer";
      const label = document.createElement("small");
      label.textContent = l.digest;
      const bar = document.createElement("progress");
      bar.max = l.total; bar.value = l.completed;
      row.append(label, bar);
      return row;
    }));
    if (!active(frame.state)) card.querySelectorAll("form").forEach((f) => f.remove());
  }

  function connect(delay) {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws/jobs/`);
    socket.onmessage = (event) => {
      const frame = JSON.parse(event.data);
      if (frame.type !== "job") return;
      updateTray(frame);
      updateCard(frame);
    };
    socket.onclose = (event) => {
      if (event.code === 4403) return;
      setTimeout(() => connect(Math.min(delay * 2, 30000)), delay);
    };
  }
  connect(1000);
})();
