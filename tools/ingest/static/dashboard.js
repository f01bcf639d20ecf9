// The dashboard page: no build step, plain ES2017 and uPlot (vendored, static/vendor/).
// Data: /dash/boards (boards, their panel, which plots), /dash/series (every board's
// min/max/mean per bucket, as many buckets as the plot is wide), /dash/export (CSV).
// State lives in the URL (?stream=&range=24h, or &from=&to= in ISO UTC) so a reload or a
// shared link shows the same view.  window.dash exposes it (tests read the plotted data).
"use strict";
(function () {
  const RANGES = { "1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400 };
  const COLORS = ["#c0392b", "#1f618d", "#1e8449", "#7d3c98"];
  const REFRESH_MS = 60000;
  const dash = { stream: null, range: "24h", from: null, to: null, info: null, plots: {},
                 series: {}, loads: 0, loading: null, errors: [] };
  window.dash = dash;

  const $ = (sel) => document.querySelector(sel);
  const el = (tag, attrs, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else e.setAttribute(k, v);
    }
    for (const k of kids) e.append(k);
    return e;
  };
  const pad = (n, w) => String(n).padStart(w || 2, "0");

  function fmtLocal(t) {
    const d = new Date(t * 1000);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }
  function fmtUTC(t) {
    return new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC";
  }
  function isoUTC(t) { return new Date(Math.round(t * 1000)).toISOString(); }
  function ago(s) {
    s = Math.max(0, Math.round(s));
    if (s < 90) return s + " s ago";
    if (s < 5400) return Math.round(s / 60) + " min ago";
    if (s < 129600) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " d ago";
  }
  function duration(s) {
    const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    return d ? d + " d " + h + " h" : h ? h + " h " + m + " min" : m + " min";
  }
  function localInput(t) {  // datetime-local value of a time, in local time
    const d = new Date(t * 1000);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "T" +
      pad(d.getHours()) + ":" + pad(d.getMinutes());
  }

  function setStatus(text, error) {
    const s = $("#status");
    s.textContent = text;
    s.className = error ? "error" : "";
  }

  async function getJSON(url) {
    const r = await fetch(url, { credentials: "same-origin" });
    if (r.status === 401) { location.href = "/login"; throw new Error("signed out"); }
    if (!r.ok) {
      let why = r.statusText;
      try { why = (await r.json()).message || why; } catch (e) { /* not JSON */ }
      throw new Error(url.split("?")[0] + ": HTTP " + r.status + ": " + why);
    }
    return r.json();
  }

  // -- URL state ---------------------------------------------------------------------------
  function readURL() {
    const q = new URLSearchParams(location.search);
    dash.stream = q.get("stream");
    const range = q.get("range") || "24h";
    if (q.get("from") && q.get("to")) {
      dash.range = "custom";
      dash.from = Date.parse(q.get("from")) / 1000;
      dash.to = Date.parse(q.get("to")) / 1000;
      if (!(dash.to > dash.from)) { dash.range = "24h"; }
    } else {
      dash.range = RANGES[range] ? range : "24h";
    }
  }
  function writeURL() {
    const q = new URLSearchParams();
    if (dash.stream) q.set("stream", dash.stream);
    if (dash.range === "custom") { q.set("from", isoUTC(dash.from)); q.set("to", isoUTC(dash.to)); }
    else q.set("range", dash.range);
    history.replaceState(null, "", "?" + q.toString());
  }
  function span() {
    if (dash.range !== "custom") {
      const now = Date.now() / 1000;
      return [now - RANGES[dash.range], now];
    }
    return [dash.from, dash.to];
  }

  // -- board panel -------------------------------------------------------------------------
  function panel(b, now) {
    const h = b.health;
    const items = [];
    const add = (k, label, text) => items.push(el("div", { "data-k": k }, el("dt", {}, label),
                                                   el("dd", {}, text)));
    add("last_seen", "Last seen", fmtLocal(b.last_seen) + " (" + ago(now - b.last_seen) + ")");
    add("last_sample", "Last sample", b.last_sample == null ? "none" : fmtLocal(b.last_sample));
    if (h) {
      add("queue_lag", "Queue lag", h.queue_lag + " records");
      add("dropped", "Dropped", String(h.dropped));
      add("dead", "Dead-lettered", String(h.dead));
      add("heap", "Heap free / used", Math.round(h.heap_free / 1024) + " / " +
          Math.round(h.heap_used / 1024) + " KiB");
      add("rssi", "Wi-Fi RSSI", h.rssi ? h.rssi + " dBm" : "unknown");
      add("uptime", "Uptime", duration(h.uptime_s));
      add("reset_cause", "Reset cause", h.reset_cause + " (boot " + h.boot + ")");
      add("firmware", "Firmware", h.firmware || "not reported");
      add("health_time", "Health record", fmtLocal(h.time));
    } else {
      add("health_time", "Health", "no health record yet");
    }
    return el("dl", { class: "panel" }, ...items);
  }

  function exportURL(sym) {
    const [a, b] = span();
    return "/dash/export?" + new URLSearchParams({ stream: dash.info.stream, symbol: sym,
                                                   from: isoUTC(a), to: isoUTC(b) });
  }

  // -- plots -------------------------------------------------------------------------------
  // Local time on the x axis, 24-hour clock; the date at midnight and for wide steps.
  function axisTimes(u, splits, ax, space, incr) {
    return splits.map((v) => {
      const d = new Date(v * 1000);
      const day = pad(d.getMonth() + 1) + "-" + pad(d.getDate());
      const hm = pad(d.getHours()) + ":" + pad(d.getMinutes());
      if (incr >= 86400) return day;
      return d.getHours() === 0 && d.getMinutes() === 0 ? day + "\n" + hm : hm;
    });
  }

  function plotOptions(p, width, lo, hi) {
    const dec = p.scale === 1 ? 1 : 2;
    const fmt = (u, v) => v == null ? "\u2013" : (v).toFixed(dec) + " " + p.unit;
    const series = [{ label: "Time", value: (u, v) => v == null ? "\u2013" :
                      fmtLocal(v) + " (" + fmtUTC(v) + ")" }];
    const bands = [];
    p.fields.forEach((f, i) => {
      const c = COLORS[i % COLORS.length];
      const i0 = series.length;
      series.push({ label: f.label, stroke: c, width: 1.5, value: fmt, spanGaps: false });
      series.push({ label: f.label + " min", stroke: "rgba(0,0,0,0)", value: fmt,
                    points: { show: false } });
      series.push({ label: f.label + " max", stroke: "rgba(0,0,0,0)", value: fmt,
                    points: { show: false } });
      bands.push({ series: [i0 + 2, i0 + 1], fill: c + "33" });
    });
    return { title: p.title + " (" + p.unit + ")", width: width, height: 220,
             scales: { x: { time: true, range: () => [lo, hi] } }, series: series, bands: bands,
             axes: [{ values: axisTimes }, { label: p.unit, size: 60 }],
             legend: { live: true } };
  }

  function plotData(p, s) {
    const data = [s.t];
    for (const f of p.fields) {
      const c = s.fields[f.name];
      const k = p.scale;
      const scaled = (a) => k === 1 ? a : a.map((v) => v == null ? null : +(v * k).toFixed(6));
      data.push(scaled(c.mean), scaled(c.min), scaled(c.max));
    }
    return data;
  }

  function drawBoard(b, s, box, lo, hi) {
    const plots = dash.info.plots;
    const width = Math.max(300, Math.floor(box.clientWidth));
    dash.series[b.symbol] = s;
    for (const u of dash.plots[b.symbol] || []) u.destroy();
    box.textContent = "";
    dash.plots[b.symbol] = [];
    if (!s.t.length) {
      box.append(el("p", { class: "empty" }, "No samples from " + fmtLocal(lo) + " to " +
                    fmtLocal(hi) + "."));
      return;
    }
    const t0 = performance.now();
    for (const p of plots) {
      const div = el("div", { class: "plot", "data-plot": p.title });
      box.append(div);
      dash.plots[b.symbol].push(new uPlot(plotOptions(p, width, lo, hi), plotData(p, s), div));
    }
    dash.drawMs += performance.now() - t0;
  }

  async function load() {
    const t0 = performance.now();
    const [lo, hi] = span();
    setStatus("Loading\u2026");
    const info = await getJSON("/dash/boards?" + new URLSearchParams(
      dash.stream ? { stream: dash.stream } : {}));
    dash.info = info;
    dash.stream = info.stream;
    writeURL();
    $("#user").textContent = info.user;
    const pick = $("#stream");
    pick.textContent = "";
    for (const s of info.streams) pick.append(el("option", { value: s }, s));
    pick.value = info.stream;
    $("#stream-pick").hidden = info.streams.length < 2;
    for (const btn of document.querySelectorAll("#ranges [data-range]")) {
      btn.setAttribute("aria-pressed", String(btn.dataset.range === dash.range));
    }
    $("#from").value = localInput(lo);
    $("#to").value = localInput(hi);
    const main = $("#boards");
    for (const list of Object.values(dash.plots)) for (const u of list) u.destroy();
    dash.plots = {};
    dash.series = {};
    dash.drawMs = 0;
    main.textContent = "";
    if (!info.boards.length) {
      main.append(el("p", { class: "empty" }, "No board has sent anything to stream " +
                     info.stream + " yet."));
    }
    const boxes = [];
    for (const b of info.boards) {
      const state = b.offline
        ? el("span", { class: "state offline" }, "offline since " + fmtLocal(b.last_seen) +
             " (" + ago(info.now - b.last_seen) + ")")
        : el("span", { class: "state online" }, "online");
      const dl = el("a", { class: "download", href: exportURL(b.symbol), download: "" },
                    "Download CSV");
      const box = el("div", { class: "plots" });
      main.append(el("section", { class: "board", "data-symbol": b.symbol },
                     el("h2", {}, b.symbol, state, dl), panel(b, info.now), box));
      boxes.push(box);
    }
    if (info.boards.length) {  // one request for every board: see /dash/series
      const fields = info.plots.flatMap((p) => p.fields.map((f) => f.name));
      const width = Math.max(300, Math.floor(boxes[0].clientWidth));
      const got = await getJSON("/dash/series?" + new URLSearchParams({
        stream: info.stream, symbols: info.boards.map((b) => b.symbol).join(","),
        from: isoUTC(lo), to: isoUTC(hi), buckets: width, fields: fields.join(",") }));
      info.boards.forEach((b, i) => drawBoard(b, got.series[b.symbol], boxes[i], lo, hi));
    }
    dash.loads += 1;
    dash.lastLoadMs = performance.now() - t0;
    dash.doneAt = performance.now();  // ms since this page's navigation started
    setStatus(info.boards.length + " board(s), " + fmtLocal(lo) + " to " + fmtLocal(hi) +
              " (updated " + fmtLocal(Date.now() / 1000) + ")");
  }

  function reload() {
    writeURL();
    dash.loading = load().catch((e) => {
      setStatus(String(e.message || e), true);
      dash.errors.push(String(e.message || e));
      throw e;  // an unexpected failure is an error on the console too (the tests watch it)
    });
    return dash.loading;
  }

  function start() {
    readURL();
    $("#tz").textContent = Intl.DateTimeFormat().resolvedOptions().timeZone || "local";
    for (const btn of document.querySelectorAll("#ranges [data-range]")) {
      btn.addEventListener("click", () => { dash.range = btn.dataset.range; reload(); });
    }
    $("#apply").addEventListener("click", () => {
      const a = Date.parse($("#from").value) / 1000, b = Date.parse($("#to").value) / 1000;
      if (!(b > a)) { setStatus("The end of the range must be after its start.", true); return; }
      dash.range = "custom"; dash.from = a; dash.to = b; reload();
    });
    $("#stream").addEventListener("change", (e) => { dash.stream = e.target.value; reload(); });
    setInterval(() => { if (dash.range !== "custom") reload(); }, REFRESH_MS);
    reload();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
