/* driftloop dashboard: polls /dashboard/api/models/<model> and draws it with uPlot. */
(function () {
  "use strict";

  const POLL_MS = Number(document.body.dataset.pollMs) || 2000;
  const STATE_COLORS = { OK: "#2e7d32", WARN: "#f2a900", ALERT: "#d62728", NO_DATA: "#8a8a8a" };
  const MARK_COLORS = { incident: "#d62728", recovery: "#2e7d32", deploy: "#6a3d9a", state: "#555" };
  const params = new URLSearchParams(location.search);

  const view = {
    model: params.get("model"),
    span: Number(params.get("span")) || 3600,
    custom: null, // {start, end} in unix seconds when a custom range is applied
    points: Math.min(Math.max(Number(params.get("points")) || 1000, 10), 100000),
    charts: new Map(), // monitor name -> {plot, card, chart}
    rendered: {}, // section -> JSON of what it shows, to skip identical redraws
    timer: null,
    busy: false,
    lastOk: 0,
  };

  // -- small DOM helpers ------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key.startsWith("data-")) node.setAttribute(key, String(value));
      else if (key === "open") node.open = Boolean(value);
      else if (key === "style") node.style.cssText = String(value); // CSSOM: allowed by the CSP
      else node.setAttribute(key, String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function pad(n) { return String(n).padStart(2, "0"); }

  function fmtTime(ts) {
    if (ts === null || ts === undefined) return "–";
    const d = new Date(ts * 1000);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function fmtNum(v, digits) {
    return v === null || v === undefined ? "–" : Number(v).toFixed(digits === undefined ? 3 : digits);
  }

  function fmtDuration(seconds) {
    if (seconds < 90) return `${Math.round(seconds)} s`;
    if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
    if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} h`;
    return `${(seconds / 86400).toFixed(1)} d`;
  }

  function badge(state) {
    return el("span", { class: `badge state-${state}`, "data-state": state }, state);
  }

  function showError(message) {
    const banner = document.getElementById("error");
    banner.textContent = message || "";
    banner.hidden = !message;
  }

  async function fetchJSON(url) {
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (response.status === 401) {
      location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
      throw new Error("not logged in");
    }
    const body = await response.json();
    if (!response.ok) throw new Error(body.error ? body.error.message : `HTTP ${response.status}`);
    return body;
  }

  // -- charts -----------------------------------------------------------------------------
  function marksPlugin() {
    return {
      hooks: {
        draw: [(u) => {
          const marks = u.driftloopMarks || [];
          const ctx = u.ctx;
          const top = u.bbox.top;
          const bottom = u.bbox.top + u.bbox.height;
          ctx.save();
          ctx.font = `${Math.round(10 * devicePixelRatio)}px system-ui, sans-serif`;
          ctx.textAlign = "left"; // uPlot leaves the axes' alignment on the context
          ctx.textBaseline = "alphabetic";
          ctx.lineWidth = Math.max(1, devicePixelRatio);
          const rowEnds = [-Infinity, -Infinity, -Infinity, -Infinity];
          const sorted = [...marks].sort((a, b) => a.timestamp - b.timestamp);
          for (const mark of sorted) {
            const x = u.valToPos(mark.timestamp, "x", true);
            if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
            ctx.strokeStyle = MARK_COLORS[mark.kind] || "#555";
            ctx.fillStyle = ctx.strokeStyle;
            ctx.setLineDash(mark.kind === "deploy" ? [6, 3] : []);
            ctx.beginPath();
            ctx.moveTo(x, top);
            ctx.lineTo(x, bottom);
            ctx.stroke();
            // Labels of nearby marks go on separate rows instead of on top of each other.
            const width = ctx.measureText(mark.label).width + 6 * devicePixelRatio;
            const right = x + width > u.bbox.left + u.bbox.width;
            const textX = right ? x - width : x + 3 * devicePixelRatio;
            let row = rowEnds.findIndex((end) => textX > end);
            if (row < 0) row = rowEnds.length - 1;
            rowEnds[row] = textX + width;
            ctx.setLineDash([]);
            ctx.fillText(mark.label, textX, top + (12 + 12 * row) * devicePixelRatio);
          }
          ctx.restore();
        }],
      },
    };
  }

  function chartData(chart) {
    const n = chart.points.length;
    const xs = new Float64Array(n);
    const avg = new Array(n);
    const min = new Array(n);
    for (let i = 0; i < n; i++) {
      const p = chart.points[i];
      xs[i] = p.timestamp;
      avg[i] = p.avg;
      min[i] = p.min;
    }
    const warning = new Array(n).fill(chart.warning);
    const critical = new Array(n).fill(chart.critical);
    return [xs, avg, min, warning, critical];
  }

  function chartWidth(container) {
    return Math.max(320, container.clientWidth || 600);
  }

  /** Draw (or redraw in place) one metric chart; returns the uPlot instance. */
  function renderChart(container, chart, range, existing) {
    const data = chartData(chart);
    if (existing) {
      existing.driftloopMarks = chart.marks;
      existing.driftloopRange = range;
      existing.setData(data);
      return existing;
    }
    const opts = {
      width: chartWidth(container),
      height: 260,
      scales: {
        x: { time: true, range: (u) => u.driftloopRange || [null, null] },
      },
      legend: { live: true },
      cursor: { drag: { x: true, y: false } },
      series: [
        {},
        { label: `${chart.metric} avg`, stroke: "#1f77b4", width: 2, points: { show: false } },
        { label: `${chart.metric} min`, stroke: "#7fb3dc", width: 1, points: { show: false } },
        { label: "warning", stroke: STATE_COLORS.WARN, width: 1.5, dash: [8, 4], points: { show: false } },
        { label: "critical", stroke: STATE_COLORS.ALERT, width: 1.5, dash: [8, 4], points: { show: false } },
      ],
      axes: [{}, { size: 50 }],
      plugins: [marksPlugin()],
    };
    const plot = new uPlot(opts, [[], [], [], [], []], container);
    plot.driftloopMarks = chart.marks;
    plot.driftloopRange = range;
    plot.setData(data);
    return plot;
  }

  function renderCharts(snapshot) {
    const host = document.getElementById("charts");
    const seen = new Set();
    const range = [snapshot.start, snapshot.end];
    if (snapshot.charts.length === 0 && !host.querySelector(".empty")) {
      host.replaceChildren(el("p", { class: "empty" }, "No monitor watches this model."));
    }
    for (const chart of snapshot.charts) {
      seen.add(chart.monitor);
      let entry = view.charts.get(chart.monitor);
      if (!entry) {
        host.querySelector(".empty")?.remove();
        const container = el("div", { class: "chart" });
        const title = el("h3", {}, chart.monitor, el("span", { class: "state" }));
        const meta = el("div", { class: "meta" });
        const card = el("div", { class: "chart-card", "data-monitor": chart.monitor }, title, meta, container);
        host.append(card);
        entry = { card, container, plot: null };
        view.charts.set(chart.monitor, entry);
      }
      entry.plot = renderChart(entry.container, chart, range, entry.plot);
      entry.card.dataset.points = String(chart.points.length);
      entry.card.dataset.state = chart.state;
      entry.card.querySelector("h3 .state").replaceChildren(badge(chart.state));
      const thresholds = [
        chart.warning !== null ? `warning ${chart.direction} ${fmtNum(chart.warning)}` : null,
        chart.critical !== null ? `critical ${chart.direction} ${fmtNum(chart.critical)}` : null,
      ].filter(Boolean).join(" · ");
      entry.card.querySelector(".meta").textContent =
        `${chart.aggregation} of ${chart.metric} · ${chart.points.length} points · ` +
        `step ${fmtDuration(chart.step)}${thresholds ? " · " + thresholds : ""}`;
    }
    for (const [name, entry] of view.charts) {
      if (!seen.has(name)) {
        entry.plot.destroy();
        entry.card.remove();
        view.charts.delete(name);
      }
    }
  }

  function resetCharts() {
    for (const entry of view.charts.values()) {
      entry.plot.destroy();
      entry.card.remove();
    }
    view.charts.clear();
    view.rendered = {};
  }

  // -- sections ---------------------------------------------------------------------------
  /** Replace a section's content only when what it shows changed (keeps open <details>). */
  function section(id, value, build) {
    const key = JSON.stringify(value);
    if (view.rendered[id] === key) return;
    view.rendered[id] = key;
    const host = document.getElementById(id);
    const open = new Set([...host.querySelectorAll("details[open]")].map((d) => d.dataset.id));
    host.replaceChildren(build(open));
  }

  function renderSummary(snapshot) {
    const s = snapshot.summary;
    section("summary", s, () => el("div", { class: "summary" },
      el("span", { class: "name" }, s.name),
      badge(s.worst_state),
      el("span", { class: "fact" }, "production ", el("b", {}, s.production_version === null ? "none" : `v${s.production_version}`)),
      el("span", { class: "fact" }, "open incidents ", el("b", {}, s.open_incidents)),
      el("span", { class: "fact" }, "aliases ", el("b", {},
        Object.entries(s.aliases).map(([a, v]) => `${a}=v${v}`).join(", ") || "none"))));
  }

  function renderMonitors(snapshot) {
    section("monitors", snapshot.monitors, () => {
      if (snapshot.monitors.length === 0) return el("p", { class: "empty" }, "No monitor state yet.");
      return el("table", { id: "monitor-table" },
        el("thead", {}, el("tr", {}, ["monitor", "group", "state", "value", "threshold", "since", "last evaluated", "incident"].map((h) => el("th", {}, h)))),
        el("tbody", {}, snapshot.monitors.map((m) => el("tr", { "data-monitor": m.monitor, "data-state": m.state },
          el("td", {}, m.monitor),
          el("td", {}, Object.entries(m.group).map(([k, v]) => `${k}=${v}`).join(", ") || "–"),
          el("td", {}, badge(m.state)),
          el("td", {}, fmtNum(m.value)),
          el("td", {}, fmtNum(m.threshold)),
          el("td", {}, fmtTime(m.since)),
          el("td", {}, fmtTime(m.last_evaluated)),
          el("td", {}, m.incident_id ? m.incident_id.slice(0, 12) : "–")))));
    });
  }

  function renderIncidents(snapshot) {
    section("incidents", snapshot.incidents, (open) => {
      if (snapshot.incidents.length === 0) return el("p", { class: "empty" }, "No incidents in this range.");
      return el("div", {}, snapshot.incidents.map((inc) => el("details",
        { "data-id": inc.incident_id, class: "incident", open: open.has(inc.incident_id) },
        el("summary", {},
          badge(({ critical: "ALERT", error: "ALERT", warning: "WARN" })[inc.severity.toLowerCase()] || inc.severity.toUpperCase()),
          el("b", {}, inc.title),
          el("span", {}, inc.status),
          el("span", { class: "when" }, `opened ${fmtTime(inc.opened_at)}`),
          el("span", { class: "when" }, inc.resolved_at === null ? "ongoing"
            : `resolved ${fmtTime(inc.resolved_at)} (${fmtDuration(inc.resolved_at - inc.opened_at)})`)),
        el("ol", { class: "timeline" }, inc.timeline.map((entry) => el("li", {},
          el("span", { class: "when" }, fmtTime(entry.timestamp)),
          el("span", { class: "kind" }, entry.kind),
          entry.message))))));
    });
  }

  function renderVersions(snapshot) {
    section("versions", snapshot.versions, () => {
      if (snapshot.versions.length === 0) return el("p", { class: "empty" }, "No registered versions.");
      return el("table", {},
        el("thead", {}, el("tr", {}, ["version", "aliases", "accuracy", "macro F1", "ECE", "trainer", "trigger", "created", "deployed", "content hash"].map((h) => el("th", {}, h)))),
        el("tbody", {}, snapshot.versions.map((v) => el("tr", { "data-version": v.version },
          el("td", {}, `v${v.version}`),
          el("td", {}, v.aliases.map((a) => el("span", { class: "alias" }, a))),
          el("td", {}, fmtNum(v.accuracy)),
          el("td", {}, fmtNum(v.macro_f1)),
          el("td", {}, fmtNum(v.ece)),
          el("td", {}, v.trainer),
          el("td", {}, v.trigger),
          el("td", {}, fmtTime(v.created_at)),
          el("td", {}, fmtTime(v.deployed_at)),
          el("td", {}, el("code", {}, v.content_hash.slice(0, 12)))))));
    });
  }

  function renderAccuracy(snapshot) {
    const rows = snapshot.accuracy || [];
    section("accuracy", rows, () => {
      if (rows.length === 0) return el("p", { class: "empty" }, "No estimated accuracy or feedback labels lately.");
      const holds = (a) => a.estimate_holds === null ? "–"
        : a.estimate_holds ? "holds"
          : el("span", { class: "may-not-hold", title: a.may_not_hold_because.join("; ") },
            `may not hold: ${a.may_not_hold_because.join("; ")}`);
      return el("table", { id: "accuracy-table" },
        el("thead", {}, el("tr", {}, ["version", "held-out accuracy", "estimated (last 5 min)", "predictions", "estimate", "realized (last hour)", "labels"].map((h) => el("th", {}, h)))),
        el("tbody", {}, rows.map((a) => el("tr", { "data-version": a.version, "data-holds": String(a.estimate_holds) },
          el("td", {}, `v${a.version}`),
          el("td", {}, fmtNum(a.reference_accuracy)),
          el("td", {}, fmtNum(a.estimated)),
          el("td", {}, a.estimated_n),
          el("td", {}, holds(a)),
          el("td", {}, fmtNum(a.realized)),
          el("td", {}, a.realized_n)))));
    });
  }

  function renderJobs(snapshot) {
    section("jobs", snapshot.jobs, (open) => {
      if (snapshot.jobs.length === 0) return el("p", { class: "empty" }, "No retrain jobs.");
      return el("div", {}, snapshot.jobs.map((job) => el("details",
        { "data-id": job.job_id, class: "job", open: open.has(job.job_id) },
        el("summary", {},
          el("b", {}, job.state),
          el("code", {}, job.job_id.slice(0, 12)),
          el("span", {}, job.trigger),
          job.candidate_version !== null ? el("span", {}, `candidate v${job.candidate_version}`) : null,
          el("span", { class: "when" }, `created ${fmtTime(job.created_at)}`),
          job.finished_at !== null ? el("span", { class: "when" }, `finished ${fmtTime(job.finished_at)}`) : null),
        job.reason ? el("p", {}, job.reason) : null,
        job.error ? el("p", { class: "error" }, job.error) : null,
        el("table", {},
          el("thead", {}, el("tr", {}, ["step", "outcome", "started", "finished", "log"].map((h) => el("th", {}, h)))),
          el("tbody", {}, job.steps.map((step) => el("tr", {},
            el("td", {}, step.step),
            el("td", {}, step.outcome || "running"),
            el("td", {}, fmtTime(step.started_at)),
            el("td", {}, fmtTime(step.finished_at)),
            el("td", {}, step.log ? el("pre", { class: "log" }, step.log) : "–"))))))));
    });
  }

  // -- models, ranges, polling ------------------------------------------------------------
  function renderModels(models) {
    const nav = document.getElementById("models");
    section("models", { models, current: view.model }, () => el("div", { style: "display:contents" },
      models.map((m) => {
        const button = el("button", { type: "button", "data-model": m.name, class: m.name === view.model ? "active" : "" },
          el("span", { class: "dot", style: `background:${STATE_COLORS[m.worst_state] || "#888"}` }), m.name);
        button.addEventListener("click", () => selectModel(m.name));
        return button;
      })));
    if (models.length === 0) nav.replaceChildren(el("span", { class: "empty" }, "no models yet"));
  }

  function selectModel(name) {
    if (name === view.model) return;
    view.model = name;
    const url = new URL(location.href);
    url.searchParams.set("model", name);
    history.replaceState(null, "", url);
    resetCharts();
    refresh();
  }

  function rangeQuery() {
    if (view.custom) return `start=${view.custom.start}&end=${view.custom.end}`;
    return `span=${view.span}`;
  }

  async function refresh() {
    if (view.busy) return;
    view.busy = true;
    const live = document.getElementById("live");
    try {
      const overview = await fetchJSON("/dashboard/api/models");
      const names = overview.models.map((m) => m.name);
      if (!view.model || !names.includes(view.model)) view.model = names[0] || null;
      renderModels(overview.models);
      if (view.model) {
        const model = encodeURIComponent(view.model);
        const snapshot = await fetchJSON(`/dashboard/api/models/${model}?${rangeQuery()}&points=${view.points}`);
        if (snapshot.model === view.model) {
          renderSummary(snapshot);
          renderMonitors(snapshot);
          renderAccuracy(snapshot);
          renderCharts(snapshot);
          renderIncidents(snapshot);
          renderVersions(snapshot);
          renderJobs(snapshot);
        }
      }
      view.lastOk = Date.now();
      live.className = "live ok";
      live.textContent = `live · updated ${fmtTime(overview.now)}`;
      showError("");
    } catch (error) {
      live.className = "live stale";
      live.textContent = "not updating";
      showError(`Could not load the dashboard data: ${error.message}`);
    } finally {
      view.busy = false;
    }
  }

  function toLocalInput(ts) {
    const d = new Date(ts * 1000);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function setupRanges() {
    const custom = document.getElementById("custom-range");
    for (const button of document.querySelectorAll("#ranges button[data-span]")) {
      if (button.dataset.span !== "custom") button.classList.toggle("active", Number(button.dataset.span) === view.span);
      button.addEventListener("click", () => {
        for (const b of document.querySelectorAll("#ranges button[data-span]")) b.classList.toggle("active", b === button);
        if (button.dataset.span === "custom") {
          const now = Date.now() / 1000;
          document.getElementById("custom-start").value = toLocalInput(now - view.span);
          document.getElementById("custom-end").value = toLocalInput(now);
          custom.hidden = false;
          return;
        }
        custom.hidden = true;
        view.custom = null;
        view.span = Number(button.dataset.span);
        refresh();
      });
    }
    document.getElementById("custom-apply").addEventListener("click", () => {
      const start = new Date(document.getElementById("custom-start").value).getTime() / 1000;
      const end = new Date(document.getElementById("custom-end").value).getTime() / 1000;
      if (!(end > start)) {
        showError("The custom range needs a start before its end.");
        return;
      }
      view.custom = { start, end };
      refresh();
    });
  }

  window.addEventListener("resize", () => {
    for (const entry of view.charts.values()) {
      entry.plot.setSize({ width: chartWidth(entry.container), height: 260 });
    }
  });

  setupRanges();
  refresh();
  view.timer = setInterval(refresh, POLL_MS);

  // For tests and for the curious: the charts and the renderer.
  window.driftloopDashboard = { view, refresh, renderChart, chartData };
})();
