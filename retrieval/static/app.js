// reldistill web page: one query, two pipelines side by side (pipeline + mode selectable per column).
"use strict";
const MODES = ["bm25", "dense", "hybrid", "rerank"];
const $ = (sel, root = document) => root.querySelector(sel);
let stats = null;

function apiKey() { return localStorage.getItem("reldistill-api-key") || ""; }

async function api(path) {
  const headers = apiKey() ? { "X-API-Key": apiKey() } : {};
  let res = await fetch(path, { headers });
  if (res.status === 401) {
    const key = window.prompt("This server needs an API key (X-API-Key):");
    if (key) { localStorage.setItem("reldistill-api-key", key); res = await fetch(path, { headers: { "X-API-Key": key } }); }
  }
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    const d = body.detail;
    throw new Error(Array.isArray(d) ? d.map(e => `${e.loc.slice(-1)[0]}: ${e.msg}`).join("; ") : (d || res.statusText));
  }
  return body;
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function setupColumn(col, pipeline, mode) {
  const ps = $(".pipeline", col), ms = $(".mode", col);
  for (const [name, p] of Object.entries(stats.pipelines)) {
    const o = el("option", "", `${name}: ${p.name}`); o.value = name; ps.append(o);
  }
  for (const m of MODES) {
    const o = el("option", "", m === "rerank" ? "hybrid + rerank" : m); o.value = m;
    if (!stats.modes.includes(m)) o.disabled = true;
    ms.append(o);
  }
  ps.value = pipeline; ms.value = mode;
  ps.addEventListener("change", run); ms.addEventListener("change", run);
}

function render(col, data) {
  const list = $(".results", col);
  list.replaceChildren();
  const counts = {};
  for (const r of data.results) {
    const li = el("li", "result");
    li.dataset.productId = r.product_id;
    li.append(el("span", "rank", String(r.rank)));
    const body = el("div");
    const title = el("div", "title");
    if (data.judged) {
      const lab = r.label || "?";
      counts[lab] = (counts[lab] || 0) + 1;
      title.append(el("b", `lab ${r.label || "none"}`, lab));
    }
    title.append(document.createTextNode(r.title));
    body.append(title);
    const stages = [["bm25", r.bm25_rank], ["dense", r.dense_rank], ["rrf", r.fused_rank], ["rerank", r.rerank_rank]]
      .filter(([, v]) => v !== null && v !== undefined).map(([n, v]) => `${n} #${v}`).join(" · ");
    body.append(el("div", "meta", [r.brand, stages].filter(Boolean).join(" — ")));
    li.append(body);
    const prob = r.p_exact !== null && r.p_exact !== undefined;  // calibrated P(Exact) when the model has a calibration
    li.append(el("span", "score", prob ? `P(E) ${r.p_exact.toFixed(2)} · ${r.score.toFixed(4)}` : r.score.toFixed(4)));
    if (prob) li.title = `P(Exact) ${r.p_exact.toFixed(3)}, P(Exact or Substitute) ${r.p_exact_or_substitute.toFixed(3)}, raw score ${r.score.toFixed(4)}`;
    list.append(li);
  }
  const t = data.timings_ms.total_ms;
  const labels = data.judged ? " · " + ["E", "S", "C", "I", "?"].filter(l => counts[l]).map(l => `${counts[l]} ${l}`).join(" ") : "";
  $(".summary", col).textContent = `${data.results.length} results · ${t.toFixed(0)} ms${labels}`;
  if (!data.results.length) list.append(el("li", "meta", "no results"));
}

async function searchColumn(col, q, k) {
  const pipeline = $(".pipeline", col).value, mode = $(".mode", col).value;
  const params = new URLSearchParams({ q, k, mode, pipeline });
  try {
    render(col, await api(`/search?${params}`));
  } catch (err) {
    $(".results", col).replaceChildren(el("li", "error", String(err.message || err)));
    $(".summary", col).textContent = "";
  }
}

async function run(ev) {
  if (ev) ev.preventDefault();
  const q = $("#q").value.trim();
  if (!q) return;
  const k = $("#k").value;
  history.replaceState(null, "", `?q=${encodeURIComponent(q)}`);
  $("#status").textContent = "searching…";
  await Promise.all([searchColumn($("#col-left"), q, k), searchColumn($("#col-right"), q, k)]);
  $("#status").textContent = "";
}

async function init() {
  try {
    stats = await api("/stats");
  } catch (err) {
    $("#status").textContent = `cannot reach the service: ${err.message}`;
    return;
  }
  const hasCompare = "compare" in stats.pipelines;
  // left: the served configuration (the run's serving.json, chosen on dev); right: the same mode on the
  // compared pipeline, else another mode of this one
  const served = stats.default_mode || "hybrid";
  const other = stats.modes.find((m) => m !== served && m !== "bm25" && m !== "dense") || (served === "dense" ? "bm25" : "dense");
  setupColumn($("#col-left"), "main", served);
  setupColumn($("#col-right"), hasCompare ? "compare" : "main", hasCompare ? served : other);
  for (const q of stats.example_queries || []) {
    const b = el("button", "", q); b.type = "button";
    b.addEventListener("click", () => { $("#q").value = q; run(); });
    $("#examples").append(b);
  }
  $("#search-form").addEventListener("submit", run);
  const initial = new URLSearchParams(location.search).get("q");
  if (initial) { $("#q").value = initial; run(); }
}

init();
