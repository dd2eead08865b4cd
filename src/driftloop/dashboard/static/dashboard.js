/* driftloop dashboard: polls /dashboard/api/models/<model> and draws it with uPlot. */
(function () {
  "use strict";

  const POLL_MS = Number(document.body.dataset.pollMs) || 2000;
  const STATE_COLORS = { OK: "#2e7d32", WARN: "#f2a900", ALERT: "#d62728", NO_DATA: "#8a8a8a" };
  const MARK_COLORS = { incident: "#d62728", recovery: "#2e7d32", deploy: "#6a3d9a", state: "#555" };
  const params = new URLSearchParams(location.search);

  function customFromParams() {
    const start = Number(params.get("start"));
    const end = Number(params.get("end"));
    return start > 0 && end > start ? { start, end } : null;
  }

  const view = {
    model: params.get("model"),
    span: Number(params.get("span")) || 3600,
    custom: customFromParams(), // {start, end} in unix seconds when a custom range is applied
    points: Math.min(Math.max(Number(params.get("points")) || 1000, 10), 100000),
    charts: new Map(), // monitor name -> {plot, card, container}
    panels: new Map(), // serving panel -> {plot, card, container, labels}
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

  /** Every time on the page is UTC, 24-hour: "2026-12-01 18:13:14 UTC". */
  function fmtTime(ts) {
    if (ts === null || ts === undefined) return "–";
    return `${fmtDate(ts)} ${fmtClock(ts, true)} UTC`;
  }

  function fmtDate(ts) {
    const d = new Date(ts * 1000);
    return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
  }

  function fmtClock(ts, seconds) {
    const d = new Date(ts * 1000);
    const hm = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
    return seconds ? `${hm}:${pad(d.getUTCSeconds())}` : hm;
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

  // -- moments: ISO 8601 UTC in the JSON, unix seconds on the page ---------------------------
  const MOMENT_KEYS = new Set(["now", "start", "end", "generated_at", "since", "last_evaluated",
    "timestamp", "opened_at", "resolved_at", "created_at", "deployed_at", "status_at",
    "started_at", "finished_at"]);
  const PAYLOAD_KEYS = new Set(["data", "details"]); // sent as stored: left alone
  const ISO_MOMENT = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

  /** "2026-12-01T18:13:14.250000+00:00" as unix seconds, the fraction kept to the microsecond. */
  function epochSeconds(text) {
    const match = ISO_MOMENT.exec(text);
    if (!match) throw new Error(`not an ISO 8601 time: ${text}`);
    return Date.parse(match[1] + match[3]) / 1000 + (match[2] ? Number(match[2]) : 0);
  }

  /** The API's JSON with every moment (and a panel's grid of timestamps) in unix seconds. */
  function withSeconds(value) {
    if (Array.isArray(value)) return value.map(withSeconds);
    if (value === null || typeof value !== "object") return value;
    const out = {};
    for (const [key, item] of Object.entries(value)) {
      if (MOMENT_KEYS.has(key) && typeof item === "string") out[key] = epochSeconds(item);
      else if (key === "timestamps" && Array.isArray(item)) out[key] = item.map(epochSeconds);
      else out[key] = PAYLOAD_KEYS.has(key) ? item : withSeconds(item);
    }
    return out;
  }

  async function fetchJSON(url) {
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (response.status === 401) {
      location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
      throw new Error("not logged in");
    }
    const body = await response.json();
    if (!response.ok) throw new Error(body.error ? body.error.message : `HTTP ${response.status}`);
    return withSeconds(body);
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

  const AXIS_FONT = "12px system-ui, -apple-system, sans-serif";
  const CHART_HEIGHT = 240;
  const TICK_SPACE = 84; // CSS px between time ticks at least: "2026-12-01" is ~66 px wide

  /** Time-axis labels, 24-hour UTC: seconds when ticks are under a minute apart, the date
   * under the first tick and wherever the day changes, the date alone for ticks days apart. */
  function timeTicks(u, splits, axisIdx, foundSpace, foundIncr) {
    let lastDay = null;
    return splits.map((ts) => {
      if (ts === null || ts === undefined) return null;
      const day = fmtDate(ts);
      if (foundIncr >= 86400) return day.slice(5);
      const clock = fmtClock(ts, foundIncr < 60);
      const label = day !== lastDay ? `${clock}\n${day}` : clock;
      lastDay = day;
      return label;
    });
  }

  function timeAxis() {
    return { font: AXIS_FONT, space: TICK_SPACE, values: timeTicks, size: 44,
             stroke: "#5f6b76", grid: { stroke: "#eef1f4" }, ticks: { stroke: "#dde3e8" } };
  }

  function valueAxis(digits) {
    return { font: AXIS_FONT, size: 56, stroke: "#5f6b76", grid: { stroke: "#eef1f4" },
             ticks: { stroke: "#dde3e8" },
             values: (u, splits) => splits.map((v) => v === null ? null : fmtAxisValue(v, digits)) };
  }

  function fmtAxisValue(v, digits) {
    if (digits !== undefined) return v.toFixed(digits);
    const abs = Math.abs(v);
    if (abs >= 1000) return `${(v / 1000).toFixed(abs >= 10000 ? 0 : 1)}k`;
    if (abs >= 10 || v === 0) return String(Math.round(v * 10) / 10);
    return String(Math.round(v * 1000) / 1000);
  }

  function timeSeries() {
    return { label: "time (UTC)", value: (u, v) => v === null || v === undefined ? "–" : fmtTime(v) };
  }

  function chartWidth(container) {
    return Math.max(240, Math.floor(container.clientWidth || 600));
  }

  /** Keep a plot as wide as its container, whatever changes the layout (a window resize, a
   * chart added beside it, a scrollbar, the grid wrapping). */
  const resizer = new ResizeObserver((entries) => {
    for (const entry of entries) {
      const plot = entry.target.driftloopPlot;
      if (!plot) continue;
      const width = chartWidth(entry.target);
      if (Math.abs(plot.width - width) >= 1) plot.setSize({ width, height: CHART_HEIGHT });
    }
  });

  function newPlot(container, opts, data) {
    const plot = new uPlot({ width: chartWidth(container), height: CHART_HEIGHT, ...opts }, data, container);
    container.driftloopPlot = plot;
    resizer.observe(container);
    return plot;
  }

  function destroyPlot(plot) {
    if (!plot) return;
    const container = plot.root.parentNode;
    if (container) {
      resizer.unobserve(container);
      container.driftloopPlot = null;
    }
    plot.destroy();
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
      scales: {
        x: { time: true, range: (u, min, max) => u.driftloopRange || [min, max] },
      },
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
      legend: { live: true },
      cursor: { drag: { x: true, y: false } },
      series: [
        timeSeries(),
        { label: `${chart.metric} avg`, stroke: "#1f77b4", width: 2, points: { show: false } },
        { label: `${chart.metric} min`, stroke: "#7fb3dc", width: 1, points: { show: false } },
        { label: "warning", stroke: STATE_COLORS.WARN, width: 1.5, dash: [8, 4], points: { show: false } },
        { label: "critical", stroke: STATE_COLORS.ALERT, width: 1.5, dash: [8, 4], points: { show: false } },
      ],
      axes: [timeAxis(), valueAxis()],
      plugins: [marksPlugin()],
    };
    const plot = newPlot(container, opts, [[], [], [], [], []]);
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
        destroyPlot(entry.plot);
        entry.card.remove();
        view.charts.delete(name);
      }
    }
  }

  function resetCharts() {
    for (const entry of [...view.charts.values(), ...view.panels.values()]) {
      destroyPlot(entry.plot);
      entry.card.remove();
    }
    view.charts.clear();
    view.panels.clear();
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

  const SEVERITY_STATES = { critical: "ALERT", error: "ALERT", warning: "WARN" };

  function severityState(severity) {
    return SEVERITY_STATES[severity.toLowerCase()] || severity.toUpperCase();
  }

  /** A link to another item on the page (an incident, a job): opens and shows it. */
  function itemLink(kind, id, text) {
    const link = el("a", { href: `#${kind}-${id}`, class: `${kind}-link`, "data-target": id }, text);
    link.addEventListener("click", (event) => {
      const target = document.getElementById(`${kind}-${id}`);
      if (!target) return;
      event.preventDefault();
      target.open = true;
      target.scrollIntoView({ block: "start" });
      history.replaceState(null, "", `#${kind}-${id}`);
    });
    return link;
  }

  function renderIncidents(snapshot) {
    section("incidents", snapshot.incidents, (open) => {
      if (snapshot.incidents.length === 0) return el("p", { class: "empty" }, "No incidents in this range.");
      return el("div", {}, snapshot.incidents.map((inc) => el("details",
        { "data-id": inc.incident_id, id: `incident-${inc.incident_id}`, class: "incident",
          open: open.has(inc.incident_id) },
        el("summary", {},
          badge(severityState(inc.severity)),
          el("b", { class: "heading" }, inc.heading || inc.title),
          inc.opened_as ? el("span", { class: "escalated" }, `opened as ${inc.opened_as}`) : null,
          el("span", {}, inc.status),
          el("span", { class: "when" }, `opened ${fmtTime(inc.opened_at)}`),
          el("span", { class: "when" }, inc.resolved_at === null ? "ongoing"
            : `resolved ${fmtTime(inc.resolved_at)} (${fmtDuration(inc.resolved_at - inc.opened_at)})`),
          inc.job_ids.length ? el("span", { class: "jobs" }, "retrain ",
            inc.job_ids.flatMap((id, i) => [i ? ", " : "", itemLink("job", id, `job ${id.slice(0, 12)}`)])) : null),
        el("ol", { class: "timeline" }, inc.timeline.map((entry) => el("li", {},
          el("span", { class: "when" }, fmtTime(entry.timestamp)),
          el("span", { class: "kind" }, entry.kind),
          entry.message))))));
    });
  }

  const VERSION_STATUS_CLASS = { production: "state-OK", "rolled back": "state-ALERT", rejected: "state-WARN" };

  function versionStatus(v) {
    const status = el("span", { class: `status ${VERSION_STATUS_CLASS[v.status] || "plain"}` }, v.status);
    const when = v.status_at !== null && v.status !== "production" ? el("span", { class: "when" }, ` ${fmtTime(v.status_at)}`) : null;
    const reason = v.status_reason ? el("div", { class: "reason" }, v.status_reason) : null;
    return [status, when, reason];
  }

  function renderVersions(snapshot) {
    section("versions", snapshot.versions, () => {
      if (snapshot.versions.length === 0) return el("p", { class: "empty" }, "No registered versions.");
      return el("table", { id: "versions-table" },
        el("thead", {}, el("tr", {}, ["version", "status", "aliases", "accuracy", "macro F1", "ECE", "trainer", "trigger", "created", "deployed", "content hash"].map((h) => el("th", {}, h)))),
        el("tbody", {}, snapshot.versions.map((v) => el("tr", { "data-version": v.version, "data-status": v.status },
          el("td", {}, `v${v.version}`),
          el("td", { class: "version-status" }, versionStatus(v)),
          el("td", {}, v.aliases.map((a) => el("span", { class: "alias" }, a))),
          el("td", {}, fmtNum(v.accuracy)),
          el("td", {}, fmtNum(v.macro_f1)),
          el("td", {}, fmtNum(v.ece)),
          el("td", {}, v.trainer),
          el("td", { class: "trigger" }, v.trigger,
            v.training_code ? el("div", { class: "training-code" }, v.training_code) : null,
            v.job_id ? el("div", {}, itemLink("job", v.job_id, `job ${v.job_id.slice(0, 12)}`)) : null),
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

  const JOB_STATE_CLASS = { succeeded: "state-OK", rolled_back: "state-ALERT", failed: "state-ALERT",
                           rejected: "state-WARN", cancelled: "state-NO_DATA" };

  function renderJobs(snapshot) {
    section("jobs", snapshot.jobs, (open) => {
      if (snapshot.jobs.length === 0) return el("p", { class: "empty" }, "No retrain jobs.");
      return el("div", {}, snapshot.jobs.map((job) => el("details",
        { "data-id": job.job_id, id: `job-${job.job_id}`, class: "job", "data-state": job.state,
          open: open.has(job.job_id) },
        el("summary", {},
          el("span", { class: `status ${JOB_STATE_CLASS[job.state] || "plain"}` }, job.state.replace("_", " ")),
          el("code", {}, job.job_id.slice(0, 12)),
          el("span", {}, job.trigger),
          job.candidate_version !== null ? el("span", {}, `candidate v${job.candidate_version}`) : null,
          el("span", { class: "when" }, `created ${fmtTime(job.created_at)}`),
          job.finished_at !== null ? el("span", { class: "when" }, `finished ${fmtTime(job.finished_at)}`) : null,
          job.incident_id ? itemLink("incident", job.incident_id, `incident ${job.incident_id.slice(0, 12)}`) : null,
          // why it ended as it did, as `driftloop jobs show` says: seen without opening the job
          job.error ? el("span", { class: "job-reason" }, job.error) : null),
        job.reason ? el("p", {}, `asked for: ${job.reason}`) : null,
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

  // -- serving panels and the class mix ---------------------------------------------------
  const PANEL_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f"];

  function panelMeta(panel) {
    const s = panel.summary || {};
    if (panel.panel === "traffic") return `${s.requests ?? 0} requests · ${s.texts ?? 0} texts · step ${fmtDuration(panel.step)}`;
    if (panel.panel === "latency") return `p50 ${fmtNum(s.p50, 1)} ms · p99 ${fmtNum(s.p99, 1)} ms · step ${fmtDuration(panel.step)}`;
    if (panel.panel === "errors") return `${s.errors ?? 0} errors · ${s.rate === null || s.rate === undefined ? "–" : fmtNum(s.rate, 2) + " %"} of predict requests`;
    return `${panel.unit} · dashed: scored in shadow · step ${fmtDuration(panel.step)}`;
  }

  function panelSeries(panel) {
    let color = 0;
    return panel.series.map((series) => {
      const version = series.version === null ? null : Number(series.version);
      const stroke = version !== null && Number.isFinite(version)
        ? PANEL_COLORS[(version - 1) % PANEL_COLORS.length] : PANEL_COLORS[color++ % PANEL_COLORS.length];
      return { label: series.label, stroke, width: 1.8, spanGaps: false, points: { show: false },
               dash: series.label.endsWith("shadow") ? [6, 4] : undefined,
               value: (u, v) => v === null || v === undefined ? "–" : `${fmtAxisValue(v)} ${panel.unit === "mean confidence" ? "" : panel.unit}` };
    });
  }

  function renderPanels(snapshot) {
    const host = document.getElementById("panels");
    const range = [snapshot.start, snapshot.end];
    const deploys = (snapshot.charts[0]?.marks || []).filter((m) => m.kind === "deploy");
    for (const panel of snapshot.panels || []) {
      const labels = JSON.stringify(panel.series.map((s) => s.label));
      let entry = view.panels.get(panel.panel);
      if (entry && entry.labels !== labels) { // a version appeared: new series, new plot
        destroyPlot(entry.plot);
        entry.plot = null;
      }
      if (!entry) {
        const container = el("div", { class: "chart" });
        const card = el("div", { class: "chart-card", "data-panel": panel.panel },
          el("h3", {}, panel.title), el("div", { class: "meta" }), container);
        host.append(card);
        entry = { card, container, plot: null, labels };
        view.panels.set(panel.panel, entry);
      }
      entry.labels = labels;
      const data = [Float64Array.from(panel.timestamps), ...panel.series.map((s) => s.values)];
      if (!entry.plot) {
        entry.plot = newPlot(entry.container, {
          scales: { x: { time: true, range: (u, min, max) => u.driftloopRange || [min, max] } },
          tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
          legend: { live: true },
          cursor: { drag: { x: true, y: false } },
          series: [timeSeries(), ...panelSeries(panel)],
          axes: [timeAxis(), valueAxis(panel.panel === "versions" ? 2 : undefined)],
          plugins: [marksPlugin()],
        }, panel.series.length ? [[], ...panel.series.map(() => [])] : [[]]);
      }
      entry.plot.driftloopRange = range;
      entry.plot.driftloopMarks = deploys;
      entry.plot.setData(data);
      entry.card.dataset.series = String(panel.series.length);
      entry.card.querySelector(".meta").textContent = panelMeta(panel);
    }
  }

  function renderClassMix(snapshot) {
    const mix = snapshot.class_mix || [];
    section("class-mix", mix, () => {
      if (mix.length === 0) return el("p", { class: "empty" }, "No predictions in this range.");
      const hasReference = mix.some((c) => c.reference_share !== null);
      const widest = Math.max(...mix.map((c) => Math.max(c.share, c.reference_share || 0)), 0.01);
      const bar = (share, cls) => el("div", { class: `bar ${cls}`, style: `width:${(100 * share / widest).toFixed(1)}%` });
      return el("table", { id: "class-mix-table" },
        el("thead", {}, el("tr", {}, ["predicted class", "texts", "share", hasReference ? "validation reference" : null, ""]
          .filter((h) => h !== null).map((h) => el("th", {}, h)))),
        el("tbody", {}, mix.map((c) => el("tr", { "data-class": c.label },
          el("td", {}, c.label),
          el("td", {}, c.count),
          el("td", {}, `${(100 * c.share).toFixed(1)} %`),
          hasReference ? el("td", {}, c.reference_share === null ? "–" : `${(100 * c.reference_share).toFixed(1)} %`) : null,
          el("td", { class: "bars" }, bar(c.share, "live"), hasReference ? bar(c.reference_share || 0, "reference") : null)))));
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
          renderPanels(snapshot);
          renderClassMix(snapshot);
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

  /** The custom range's inputs are UTC, like every time on the page: "2026-12-01 18:13:14". */
  function toUtcInput(ts) {
    return `${fmtDate(ts)} ${fmtClock(ts, true)}`;
  }

  function fromUtcInput(value) {
    const match = /^\s*(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2})(:\d{2})?\s*(UTC|Z)?\s*$/.exec(value || "");
    return match ? Date.parse(`${match[1]}T${match[2]}${match[3] || ":00"}Z`) / 1000 : NaN;
  }

  function setupRanges() {
    const custom = document.getElementById("custom-range");
    for (const button of document.querySelectorAll("#ranges button[data-span]")) {
      button.classList.toggle("active", view.custom ? button.dataset.span === "custom"
        : Number(button.dataset.span) === view.span);
      button.addEventListener("click", () => {
        for (const b of document.querySelectorAll("#ranges button[data-span]")) b.classList.toggle("active", b === button);
        if (button.dataset.span === "custom") {
          const now = Date.now() / 1000;
          document.getElementById("custom-start").value = toUtcInput(now - view.span);
          document.getElementById("custom-end").value = toUtcInput(now);
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
      const start = fromUtcInput(document.getElementById("custom-start").value);
      const end = fromUtcInput(document.getElementById("custom-end").value);
      if (!(end > start)) {
        showError("The custom range needs a start before its end, both as YYYY-MM-DD HH:MM:SS (UTC).");
        return;
      }
      view.custom = { start, end };
      refresh();
    });
  }

  setupRanges();
  if (view.custom) { // ?start=T0&end=T1 (unix seconds) opens a custom range
    document.getElementById("custom-start").value = toUtcInput(view.custom.start);
    document.getElementById("custom-end").value = toUtcInput(view.custom.end);
    document.getElementById("custom-range").hidden = false;
  }
  refresh();
  view.timer = setInterval(refresh, POLL_MS);

  // For tests and for the curious: the charts and the renderer.
  window.driftloopDashboard = { view, refresh, renderChart, chartData, epochSeconds, withSeconds, AXIS_FONT };
})();
