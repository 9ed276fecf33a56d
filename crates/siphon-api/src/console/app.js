// siphon console: reads the REST API of the service that serves it (same origin)
// with the operator's bearer token, and drives pipelines, conflicts and executions.
// Everything inserted into the page goes through `html` below, which escapes it.

const TOKEN_KEY = "siphon.token";
const POLL_MS = 2000;

// ---------------------------------------------------------------- escaping

class Safe {
  constructor(s) { this.s = s; }
  toString() { return this.s; }
}
const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ESCAPES[c]);
const part = (v) => (v instanceof Safe ? v.s : Array.isArray(v) ? v.map(part).join("") : esc(v));
/** A template whose interpolations are escaped unless they come from `html` themselves. */
const html = (strings, ...values) =>
  new Safe(strings.reduce((out, s, i) => out + part(values[i - 1]) + s));

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- API

class ApiError extends Error {
  constructor(status, error, detail) {
    super(detail ? `${error}: ${detail}` : error);
    this.status = status;
    this.error = error;
    this.detail = detail;
  }
}

const token = () => sessionStorage.getItem(TOKEN_KEY);

/** Calls the API; a 401 signs out and shows the token form. */
async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch (e) {
    throw new ApiError(0, "the service cannot be reached", String(e.message || e));
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (res.status === 401) {
    signOut(token() ? "The service refused this token." : "");
    throw new ApiError(401, "unauthorized", data?.detail ?? "");
  }
  if (!res.ok) {
    const error = data?.error ?? `${res.status} ${res.statusText}`;
    const detail = data?.detail ?? (data ? "" : text.slice(0, 300));
    throw new ApiError(res.status, String(error), typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  return data;
}

const enc = encodeURIComponent;

// ---------------------------------------------------------------- messages

let bannerFromPoll = false;

function showError(e, fromPoll = false) {
  if (e instanceof ApiError && e.status === 401) return;
  $("error-title").textContent = e instanceof ApiError ? e.error : "error";
  $("error-detail").textContent = e instanceof ApiError ? e.detail || "" : String(e.message || e);
  $("error-banner").hidden = false;
  bannerFromPoll = fromPoll;
}

function clearPollError() {
  if (bannerFromPoll) $("error-banner").hidden = true;
  bannerFromPoll = false;
}

function setLive(state, text) {
  const live = $("live");
  live.dataset.live = state;
  live.textContent = text;
}

// ---------------------------------------------------------------- formatting

const num = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const num1 = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });

function fmtRate(r) {
  if (r === null || r === undefined) return "–";
  return r < 10 ? num1.format(r) : num.format(r);
}

function fmtSeconds(s) {
  if (s === null || s === undefined || Number.isNaN(s)) return "–";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 90) return `${num1.format(s)} s`;
  if (s < 5400) return `${num1.format(s / 60)} min`;
  if (s < 172800) return `${num1.format(s / 3600)} h`;
  return `${num1.format(s / 86400)} d`;
}

function fmtBytes(b) {
  if (b === null || b === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (b >= 1024 && i < units.length - 1) { b /= 1024; i += 1; }
  return `${i === 0 ? b : num1.format(b)} ${units[i]}`;
}

function ago(iso) {
  if (!iso) return html`<span class="muted">–</span>`;
  const secs = (Date.now() - Date.parse(iso)) / 1000;
  const text = secs < 0 ? "in " + fmtSeconds(-secs) : fmtSeconds(secs) + " ago";
  return html`<time datetime="${iso}" title="${new Date(iso).toLocaleString()}">${text}</time>`;
}

/**
 * `lag` as the status document gives it: `{seconds, source_commit_at, applied_at}`
 * of the newest batch applied (a bare number of seconds is read too).
 */
function fmtLag(lag) {
  if (lag === null || lag === undefined) return html`<span class="muted">–</span>`;
  if (typeof lag === "number") return fmtSeconds(lag);
  if (typeof lag !== "object") return String(lag);
  const when = [
    lag.source_commit_at ? `committed at the source ${new Date(lag.source_commit_at).toLocaleString()}` : "",
    lag.applied_at ? `applied ${new Date(lag.applied_at).toLocaleString()}` : "",
  ].filter(Boolean).join(", ");
  return html`<span title="${when ? `newest batch: ${when}` : ""}">${fmtSeconds(lag.seconds)}</span>`;
}

const tableName = (t) => (typeof t === "string" ? t : t?.schema ? `${t.schema}.${t.name}` : t?.name ?? "");

const STATE_TONE = {
  streaming: "run", snapshotting: "run", running: "run",
  idle: "ok", succeeded: "ok",
  paused: "off", not_run: "off", stopped: "warn",
  failed: "bad",
};
const badge = (text, tone) => html`<span class="badge" data-tone="${tone ?? STATE_TONE[text] ?? "off"}">${text}</span>`;

function position(cp) {
  if (!cp) return html`<span class="muted">–</span>`;
  const pos = cp.position === null || cp.position === undefined ? "" : JSON.stringify(cp.position);
  return html`<span class="muted">${cp.phase}</span> <code class="pos" title="${pos} (epoch ${cp.epoch})">${pos}</code>`;
}

// ---------------------------------------------------------------- pipelines view

let lastReport = null;
const pending = new Set(); // "pipeline\u0000table" while an action is in flight

function pipelineHeader(p) {
  const lease = p.lease
    ? html`running on <b class="mono">${p.lease.holder}</b> (epoch ${p.lease.epoch})`
    : html`<span>no worker holds it</span>`;
  const last = p.executions?.[0];
  return html`
    <h2>${p.name}</h2>
    ${p.enabled ? "" : badge("paused", "off")}
    <span class="facts">
      <span><b>${p.source}</b> → <b>${p.target}</b></span>
      <span>mode <b>${p.mode}</b></span>
      <span>schedule <b>${p.schedule}</b></span>
      <span>${lease}</span>
      ${p.lag !== undefined && p.lag !== null ? html`<span>lag <b>${fmtLag(p.lag)}</b></span>` : ""}
      ${p.retained_log_bytes !== null && p.retained_log_bytes !== undefined
        ? html`<span>log retained <b>${fmtBytes(p.retained_log_bytes)}</b></span>` : ""}
      ${p.log_checkpoint ? html`<span>log ${position(p.log_checkpoint)}</span>` : ""}
      ${last ? html`<span>last execution #${last.id} ${badge(last.status)} ${ago(last.started_at)}</span>` : ""}
    </span>`;
}

function snapshotCell(t) {
  const s = t.snapshot;
  if (!s) return "";
  const total = s.rows_total;
  if (total) {
    const pct = Math.min(100, (100 * s.rows_done) / total);
    return html`<progress max="100" value="${pct.toFixed(1)}"></progress> ${pct.toFixed(0)}%
      <div class="muted">${num.format(s.rows_done)} / ${num.format(total)} rows</div>`;
  }
  return html`<progress></progress><div class="muted">${num.format(s.rows_done)} rows</div>`;
}

function stateCell(t, busy) {
  const extra = [];
  if (!t.enabled && t.state !== "paused") extra.push(badge("pause requested", "warn"));
  if (t.enabled && t.state === "paused") extra.push(badge("resume requested", "warn"));
  if (t.resync_requested) extra.push(badge("resync requested", "warn"));
  if (busy) extra.push(badge("…", "off"));
  return html`${badge(t.state)} ${extra}`;
}

function errorCell(t) {
  if (!t.error) return "";
  const retry = t.error.next_retry ? html`; retry ${ago(t.error.next_retry)}` : html`; waits for an operator`;
  return html`<span class="msg" title="${t.error.message}">${t.error.message}</span>
    <div class="kind">${t.error.kind ?? "error"}${retry}</div>`;
}

const COLUMNS = [
  ["state", "State", (t, busy) => stateCell(t, busy)],
  ["mode", "Mode", (t) => t.mode],
  ["rate", "Rows/s", (t) => fmtRate(t.rows_per_second), "num"],
  ["lag", "Lag", (t) => fmtLag(t.lag), "num"],
  ["checkpoint", "Last checkpoint", (t) => html`${position(t.checkpoint)}<div>${t.checkpoint ? ago(t.checkpoint_at) : ""}</div>`],
  ["snapshot", "Snapshot", snapshotCell],
  ["error", "Last error", errorCell, "err"],
];

function setCell(td, content) {
  const s = part(content);
  if (td._html !== s) {
    td.innerHTML = s;
    td._html = s;
  }
}

function newPipelineSection(name) {
  const section = document.createElement("section");
  section.className = "pipeline";
  section.dataset.pipeline = name;
  section.innerHTML = part(html`<header></header>
    <table class="grid"><thead><tr><th>Table</th>${COLUMNS.map(
      ([key, title, , cls]) => html`<th class="${cls ?? ""}" data-col="${key}">${title}</th>`,
    )}<th class="num">Actions</th></tr></thead><tbody></tbody></table>
    <p class="empty" hidden>No table has run yet.</p>`);
  section._rows = new Map();
  return section;
}

function newTableRow(pipeline, table) {
  const tr = document.createElement("tr");
  tr.dataset.pipeline = pipeline;
  tr.dataset.table = table;
  const name = document.createElement("td");
  name.className = "name";
  name.dataset.field = "table";
  name.textContent = table;
  tr.append(name);
  tr._cells = COLUMNS.map(([key, , , cls]) => {
    const td = document.createElement("td");
    td.dataset.field = key;
    if (cls) td.className = cls;
    tr.append(td);
    return td;
  });
  const actions = document.createElement("td");
  actions.className = "actions";
  actions.innerHTML = part(html`<button type="button" data-action="pause" title="Stop this table (sync disable)">Pause</button><button
    type="button" data-action="resume" title="Start this table again (sync enable)">Resume</button><button
    type="button" class="danger" data-action="resync" title="Copy this table again from scratch">Resync</button>`);
  tr.append(actions);
  return tr;
}

function renderPipelines(report) {
  lastReport = report;
  const root = $("pipelines");
  const pipelines = report.pipelines ?? [];
  $("generated-at").textContent = report.generated_at ? `read ${new Date(report.generated_at).toLocaleTimeString()}` : "";
  const counts = {};
  for (const p of pipelines) for (const t of p.tables) counts[t.state] = (counts[t.state] ?? 0) + 1;
  $("status-summary").textContent = `${pipelines.length} pipeline${pipelines.length === 1 ? "" : "s"}` +
    Object.entries(counts).map(([s, n]) => ` · ${n} ${s}`).join("");
  if (!pipelines.length) {
    root.innerHTML = part(html`<p class="empty">No pipelines yet: <code>siphon sync add</code> or
      <code>POST /api/v1/pipelines</code> creates one.</p>`);
    root._sections = new Map();
    return;
  }
  if (!root._sections) {
    root._sections = new Map();
    root.textContent = "";
  }
  const seen = new Set();
  let previous = null;
  for (const p of pipelines) {
    seen.add(p.name);
    let section = root._sections.get(p.name);
    if (!section) {
      section = newPipelineSection(p.name);
      root._sections.set(p.name, section);
    }
    // Keep the report's order without moving sections that are in place.
    const expected = previous ? previous.nextSibling : root.firstChild;
    if (expected !== section) root.insertBefore(section, expected);
    previous = section;
    section.dataset.enabled = String(p.enabled);
    setCell(section.querySelector("header"), pipelineHeader(p));
    renderTables(section, p);
  }
  for (const [name, section] of root._sections) {
    if (!seen.has(name)) {
      section.remove();
      root._sections.delete(name);
    }
  }
  updatePipelineFilter(pipelines.map((p) => p.name));
}

function renderTables(section, p) {
  const tbody = section.querySelector("tbody");
  section.querySelector(".empty").hidden = p.tables.length > 0;
  const seen = new Set();
  let previous = null;
  for (const t of p.tables) {
    seen.add(t.table);
    let tr = section._rows.get(t.table);
    if (!tr) {
      tr = newTableRow(p.name, t.table);
      section._rows.set(t.table, tr);
    }
    const expected = previous ? previous.nextSibling : tbody.firstChild;
    if (expected !== tr) tbody.insertBefore(tr, expected);
    previous = tr;
    const busy = pending.has(`${p.name}\u0000${t.table}`);
    tr.dataset.state = t.state;
    tr.dataset.enabled = String(t.enabled);
    COLUMNS.forEach(([, , render], i) => setCell(tr._cells[i], render(t, busy)));
    const [pause, resume, resync] = tr.querySelectorAll("button");
    pause.disabled = busy || !t.enabled;
    resume.disabled = busy || t.enabled;
    resync.disabled = busy || t.resync_requested;
  }
  for (const [name, tr] of section._rows) {
    if (!seen.has(name)) {
      tr.remove();
      section._rows.delete(name);
    }
  }
}

const TABLE_ACTIONS = { pause: "disable", resume: "enable", resync: "resync" };

async function tableAction(pipeline, table, action) {
  if (action === "resync" &&
      !confirm(`Copy ${table} of ${pipeline} again from scratch? The target's copy is replaced.`)) return;
  const key = `${pipeline}\u0000${table}`;
  pending.add(key);
  if (lastReport) renderPipelines(lastReport);
  try {
    await api("POST", `/api/v1/pipelines/${enc(pipeline)}/tables/${enc(table)}/${TABLE_ACTIONS[action]}`);
  } catch (e) {
    showError(e);
  } finally {
    pending.delete(key);
  }
  await refreshStatus();
}

// ---------------------------------------------------------------- conflicts view

const list = (data, key) => (Array.isArray(data) ? data : data?.[key] ?? []);

function json(v) {
  if (v === null || v === undefined) return html`<span class="muted">deleted</span>`;
  return html`<pre class="json">${JSON.stringify(v, null, 1)}</pre>`;
}

let conflictsCache = [];

function renderConflicts(conflicts) {
  conflictsCache = conflicts;
  const open = conflicts.filter((c) => !c.resolved_at);
  const count = $("conflict-count");
  count.textContent = String(open.length);
  count.hidden = open.length === 0;
  const shown = $("conflicts-show-resolved").checked ? conflicts : open;
  const root = $("conflicts");
  let body;
  if (!shown.length) {
    body = html`<p class="empty">${conflicts.length ? "No open conflicts." : "No conflicts: a merge pipeline lists here the rows both sides changed."}</p>`;
  } else {
    body = html`<div class="panel"><table class="grid"><thead><tr><th>#</th><th>Pipeline</th><th>Table</th><th>Key</th>
      <th>Source row</th><th>Target row</th><th>Detected</th><th class="num">Resolution</th></tr></thead><tbody>${shown.map(
        (c) => html`<tr data-conflict="${c.id}" data-resolved="${Boolean(c.resolved_at)}">
          <td class="num">${c.id}</td><td>${c.pipeline}</td><td class="name">${tableName(c.table)}</td>
          <td><code>${JSON.stringify(c.key)}</code></td><td>${json(c.source_row)}</td><td>${json(c.target_row)}</td>
          <td>${ago(c.detected_at)}</td>
          <td class="actions">${c.resolved_at
            ? html`kept ${badge(c.resolution ?? "?", "ok")} ${ago(c.resolved_at)}`
            : html`<button type="button" data-resolve="source">Keep source</button><button type="button"
                data-resolve="target">Keep target</button>`}</td></tr>`,
      )}</tbody></table></div>`;
  }
  setCell(root, body);
}

async function refreshConflicts(fromPoll = false) {
  try {
    // The API lists the open ones by default; `unresolved=false` lists all.
    const all = $("conflicts-show-resolved").checked;
    renderConflicts(list(await api("GET", `/api/v1/conflicts${all ? "?unresolved=false" : ""}`), "conflicts"));
    clearPollError();
  } catch (e) {
    if (!fromPoll || activeTab() === "conflicts") showError(e, fromPoll);
  }
}

async function resolveConflict(id, keep, button) {
  button.closest("td").querySelectorAll("button").forEach((b) => { b.disabled = true; });
  try {
    await api("POST", `/api/v1/conflicts/${enc(id)}/resolve`, { keep });
  } catch (e) {
    showError(e);
  }
  await refreshConflicts();
}

// ---------------------------------------------------------------- executions view

let selectedExecution = null;

function updatePipelineFilter(names) {
  const select = $("executions-pipeline");
  const have = [...select.options].map((o) => o.value).filter(Boolean);
  if (have.join("\u0000") === names.join("\u0000")) return;
  const current = select.value;
  select.innerHTML = part(html`<option value="">all</option>${names.map((n) => html`<option value="${n}">${n}</option>`)}`);
  select.value = names.includes(current) ? current : "";
}

const duration = (e) =>
  e.duration_ms ?? (e.finished_at ? Date.parse(e.finished_at) - Date.parse(e.started_at) : null);

function rowsRead(e) {
  if (!Array.isArray(e.tables)) return null;
  const stats = e.tables.filter((t) => typeof t === "object" && t && "rows_read" in t);
  return stats.length ? stats.reduce((n, t) => n + t.rows_read, 0) : null;
}

function renderExecutions(executions) {
  const root = $("executions");
  if (!executions.length) {
    setCell(root, html`<p class="empty">No executions yet.</p>`);
    return;
  }
  setCell(root, html`<div class="panel"><table class="grid"><thead><tr><th class="num">#</th><th>Pipeline</th><th>Status</th>
    <th>Started</th><th class="num">Duration</th><th>Tables</th><th class="num">Rows read</th><th>Error</th></tr></thead>
    <tbody>${executions.map((e) => {
      const d = duration(e);
      const rows = rowsRead(e);
      const tables = Array.isArray(e.tables) ? e.tables.map((t) => tableName(t.table ?? t)) : [];
      return html`<tr class="clickable${selectedExecution === String(e.id) ? " selected" : ""}" data-execution="${e.id}">
        <td class="num">${e.id}</td><td>${e.pipeline ?? ""}</td><td>${badge(e.status)}</td><td>${ago(e.started_at)}</td>
        <td class="num">${d === null ? "–" : fmtSeconds(d / 1000)}</td>
        <td title="${tables.join(", ")}">${tables.length > 3 ? `${tables.slice(0, 3).join(", ")} +${tables.length - 3}` : tables.join(", ")}</td>
        <td class="num">${rows === null ? "–" : num.format(rows)}</td><td class="err">${e.error ?? ""}</td></tr>`;
    })}</tbody></table></div>`);
}

async function refreshExecutions(fromPoll = false) {
  const pipeline = $("executions-pipeline").value;
  try {
    const data = await api("GET", `/api/v1/executions${pipeline ? `?pipeline=${enc(pipeline)}` : ""}`);
    renderExecutions(list(data, "executions"));
    clearPollError();
  } catch (e) {
    showError(e, fromPoll);
  }
}

async function showExecution(id) {
  selectedExecution = String(id);
  const root = $("execution-detail");
  document.querySelectorAll("#executions tr[data-execution]").forEach((tr) => {
    tr.classList.toggle("selected", tr.dataset.execution === String(id));
  });
  try {
    const e = await api("GET", `/api/v1/executions/${enc(id)}`);
    const tables = Array.isArray(e.tables) ? e.tables.filter((t) => typeof t === "object" && t) : [];
    root.innerHTML = part(html`<div class="panel"><header><h2>Execution #${e.id}</h2>${badge(e.status)}
      <span class="muted">${e.pipeline ?? ""}</span><span class="muted">started ${ago(e.started_at)}</span>
      ${e.error ? html`<span class="err">${e.error}</span>` : ""}<span class="spacer"></span>
      <button type="button" class="link" id="execution-close" aria-label="Close">×</button></header>
      <table class="grid"><thead><tr><th>Table</th><th>Mode</th><th>Status</th><th class="num">Rows read</th>
      <th class="num">Inserted</th><th class="num">Updated</th><th class="num">Deleted</th><th class="num">Bytes</th>
      <th class="num">Duration</th><th>Error</th></tr></thead><tbody>${tables.map((t) => {
        const d = duration(t);
        return html`<tr data-table="${tableName(t.table)}"><td class="name">${tableName(t.table)}</td><td>${t.mode}</td>
          <td>${badge(t.status)}</td><td class="num">${num.format(t.rows_read ?? 0)}</td>
          <td class="num">${num.format(t.inserted ?? 0)}</td><td class="num">${num.format(t.updated ?? 0)}</td>
          <td class="num">${num.format(t.deleted ?? 0)}</td><td class="num">${fmtBytes(t.bytes)}</td>
          <td class="num">${d === null ? "–" : fmtSeconds(d / 1000)}</td><td class="err">${t.error ?? ""}</td></tr>`;
      })}</tbody></table></div>`);
    root.hidden = false;
  } catch (e) {
    showError(e);
  }
}

// ---------------------------------------------------------------- status polling and tabs

const TABS = ["pipelines", "conflicts", "executions"];
const activeTab = () => {
  const t = location.hash.replace(/^#/, "");
  return TABS.includes(t) ? t : "pipelines";
};

let signedIn = false;
let timer = null;
let tick = 0;

async function refreshStatus() {
  try {
    const report = await api("GET", "/api/v1/status");
    if (!signedIn) showConsole();
    renderPipelines(report);
    setLive("on", `live · ${new Date().toLocaleTimeString()}`);
    clearPollError();
    return true;
  } catch (e) {
    if (e.status !== 401) {
      setLive("error", "not updating");
      showError(e, true);
    }
    return false;
  }
}

let polling = false;

async function poll() {
  clearTimeout(timer);
  if (!signedIn || polling) return;
  polling = true;
  try {
    if (document.visibilityState === "visible") await pollOnce();
  } finally {
    polling = false;
  }
  if (signedIn) timer = setTimeout(poll, POLL_MS);
}

async function pollOnce() {
  tick += 1;
  const tab = activeTab();
  await refreshStatus();
  if (!signedIn) return;
  if (tab === "conflicts" || tick % 5 === 1) await refreshConflicts(true);
  if (tab === "executions") await refreshExecutions(true);
}

function showTab() {
  const tab = activeTab();
  for (const t of TABS) {
    $(`view-${t}`).hidden = !signedIn || t !== tab;
    const link = document.querySelector(`#tabs a[data-tab="${t}"]`);
    if (t === tab) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function showConsole() {
  signedIn = true;
  $("login").hidden = true;
  $("tabs").hidden = false;
  $("sign-out").hidden = !token();
  showTab();
}

function signOut(message = "") {
  signedIn = false;
  clearTimeout(timer);
  sessionStorage.removeItem(TOKEN_KEY);
  $("tabs").hidden = true;
  $("sign-out").hidden = true;
  for (const t of TABS) $(`view-${t}`).hidden = true;
  $("login").hidden = false;
  $("token-error").textContent = message;
  $("token-error").hidden = !message;
  setLive("off", "not connected");
  $("token").focus();
}

async function start() {
  if (await refreshStatus()) {
    tick = 0;
    poll();
  }
}

// ---------------------------------------------------------------- events

document.addEventListener("DOMContentLoaded", () => {
  $("token-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const value = $("token").value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    $("token").value = "";
    $("token-error").hidden = true;
    await start();
  });
  $("sign-out").addEventListener("click", () => signOut());
  $("error-dismiss").addEventListener("click", () => { $("error-banner").hidden = true; });
  $("pipelines").addEventListener("click", (ev) => {
    const button = ev.target.closest("button[data-action]");
    if (!button || button.disabled) return;
    const tr = button.closest("tr[data-table]");
    tableAction(tr.dataset.pipeline, tr.dataset.table, button.dataset.action);
  });
  $("conflicts").addEventListener("click", (ev) => {
    const button = ev.target.closest("button[data-resolve]");
    if (!button) return;
    resolveConflict(button.closest("tr[data-conflict]").dataset.conflict, button.dataset.resolve, button);
  });
  $("conflicts-show-resolved").addEventListener("change", () => {
    renderConflicts(conflictsCache);
    refreshConflicts();
  });
  $("conflicts-refresh").addEventListener("click", () => refreshConflicts());
  $("executions-refresh").addEventListener("click", () => refreshExecutions());
  $("executions-pipeline").addEventListener("change", () => refreshExecutions());
  $("executions").addEventListener("click", (ev) => {
    const tr = ev.target.closest("tr[data-execution]");
    if (tr) showExecution(tr.dataset.execution);
  });
  $("execution-detail").addEventListener("click", (ev) => {
    if (ev.target.id === "execution-close") {
      $("execution-detail").hidden = true;
      selectedExecution = null;
      document.querySelectorAll("#executions tr.selected").forEach((tr) => tr.classList.remove("selected"));
    }
  });
  window.addEventListener("hashchange", () => {
    showTab();
    if (!signedIn) return;
    if (activeTab() === "conflicts") refreshConflicts();
    if (activeTab() === "executions") refreshExecutions();
  });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && signedIn) poll();
  });
  start();
});
