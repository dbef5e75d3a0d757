// netxfw Web UI: plain JS, no external assets. The token lives in sessionStorage and goes out
// as a bearer token; every value from the API is rendered with textContent (never as HTML).
"use strict";

const TOKEN_KEY = "netxfw-token";
const POLL_MS = 2000;
const HISTORY = 150; // 5 min at 2 s
const PAGE = 50;

const $ = (sel) => document.querySelector(sel);
const state = { history: [], last: null, timer: null, pages: { whitelist: 0, blacklist: 0, port: 0, ratelimit: 0, conntrack: 0 } };

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function fmt(n) {
  if (n === null || n === undefined) return "–";
  const units = ["", "k", "M", "G", "T"];
  let i = 0;
  while (Math.abs(n) >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return (i === 0 && Number.isInteger(n) ? String(n) : n.toFixed(1)) + units[i];
}

function toast(msg, ok) {
  const t = $("#toast");
  t.textContent = msg;
  t.className = "toast " + (ok ? "ok" : "err");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.add("hidden"), ok ? 2500 : 6000);
}

async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + sessionStorage.getItem(TOKEN_KEY) };
  const init = { method, headers };
  if (body !== undefined) { headers["Content-Type"] = "application/json"; init.body = JSON.stringify(body); }
  const resp = await fetch(path, init);
  let data = null;
  try { data = await resp.json(); } catch (e) { data = null; }
  if (resp.status === 401) { logout("Your token was refused; sign in again."); throw new Error("unauthorized"); }
  if (!resp.ok) throw new Error((data && data.error) || ("HTTP " + resp.status));
  return data;
}

// ---------------------------------------------------------------- login
async function login(ev) {
  ev.preventDefault();
  const token = $("#token").value.trim();
  $("#login-error").textContent = "";
  const resp = await fetch("/api/v1/status", { headers: { Authorization: "Bearer " + token } });
  if (resp.status !== 200) {
    $("#login-error").textContent = resp.status === 401 ? "Wrong token." : "The agent answered " + resp.status + ".";
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $("#token").value = "";
  start();
}

function logout(msg) {
  sessionStorage.removeItem(TOKEN_KEY);
  clearInterval(state.timer);
  state.timer = null;
  $("#app").classList.add("hidden");
  $("#login").classList.remove("hidden");
  $("#login-error").textContent = msg || "";
}

function start() {
  $("#login").classList.add("hidden");
  $("#app").classList.remove("hidden");
  state.history = [];
  state.last = null;
  poll();
  clearInterval(state.timer);
  state.timer = setInterval(poll, POLL_MS);
  showTab(location.hash.replace("#", "") || "dashboard");
}

// ---------------------------------------------------------------- tabs
function showTab(name) {
  if (!document.getElementById("tab-" + name)) name = "dashboard";
  document.querySelectorAll(".tabpane").forEach((p) => p.classList.toggle("hidden", p.id !== "tab-" + name));
  document.querySelectorAll(".tab").forEach((b) => b.classList.toggle("active", b.dataset.tab === name));
  history.replaceState(null, "", "#" + name);
  if (name === "rules") loadRules();
  if (name === "conntrack") loadConntrack();
  if (name === "settings") loadSettings();
  if (name === "dashboard") drawChart();
}

// ---------------------------------------------------------------- dashboard
const isDrop = (r) => r.startsWith("drop_");
const isPass = (r) => r.startsWith("pass_");

async function poll() {
  let status;
  try { status = await api("GET", "/api/v1/status"); } catch (e) { if (e.message !== "unauthorized") toast(e.message); return; }
  const pill = $("#host-state");
  pill.textContent = status.loaded ? "loaded · " + ((status.config || {}).policy || "?") : "not loaded";
  pill.className = "pill " + (status.loaded && !(status.alerts || []).length ? "ok" : "bad");
  renderAlerts(status.alerts || []);
  renderSummary(status);
  if (!status.loaded) return;
  const now = Date.now() / 1000;
  const c = status.counters;
  let rates = null;
  if (state.last) {
    const dt = now - state.last.t;
    rates = {};
    for (const r of Object.keys(c)) {
      const prev = state.last.c[r] || { packets: 0, bytes: 0 };
      rates[r] = { packets: Math.max(0, c[r].packets - prev.packets) / dt, bytes: Math.max(0, c[r].bytes - prev.bytes) / dt };
    }
    let pass = 0, drop = 0;
    for (const r of Object.keys(rates)) { if (isPass(r)) pass += rates[r].packets; if (isDrop(r)) drop += rates[r].packets; }
    state.history.push({ t: now, pass, drop });
    if (state.history.length > HISTORY) state.history.shift();
    $("#rate-now").textContent = "now: " + fmt(pass) + " pass/s, " + fmt(drop) + " drop/s";
  }
  state.last = { t: now, c };
  renderCounters(c, rates);
  renderMaps(status.maps || {});
  drawChart();
}

// what `netxfw status` prints first with "!!": a failed boot restore, a rollback, rule maps left half written...
function renderAlerts(alerts) {
  const ul = $("#alerts");
  ul.replaceChildren(...alerts.map((a) => el("li", a)));
  ul.classList.toggle("hidden", !alerts.length);
}

function renderSummary(s) {
  const dl = $("#summary");
  dl.replaceChildren();
  const cfg = s.config || {};
  const rows = [
    ["program", s.loaded ? (s.identity || "").slice(0, 16) : "not loaded"],
    ["policy", cfg.policy], ["conntrack", cfg.conntrack ? "on, timeout " + cfg.conntrack_timeout + " s" : "off"],
    ["ICMP limit", cfg.icmp_rate ? cfg.icmp_rate + "/s, burst " + cfg.icmp_burst : "none"],
    ["rules", s.rules ? Object.entries(s.rules).map(([kind, n]) => kind + " " + n).join(", ") : ""],
    ["pins", s.pin_path], ["state", s.state_dir],
  ];
  for (const [k, v] of rows) { dl.append(el("dt", k), el("dd", v === undefined ? "–" : v)); }
  const tb = $("#ifaces tbody");
  tb.replaceChildren();
  for (const [name, i] of Object.entries(s.interfaces || {})) {
    const tr = el("tr");
    tr.append(el("td", name), el("td", i.xdp ? "attached" : "NOT attached"), el("td", i.xdp_mode || "–"),
      el("td", i.tc ? "attached" : "NOT attached"));
    tb.append(tr);
  }
  if (!tb.children.length) tb.append(emptyRow(4, "no interfaces"));
}

function emptyRow(cols, text) {
  const tr = el("tr");
  const td = el("td", text, "empty");
  td.colSpan = cols;
  tr.append(td);
  return tr;
}

function counterRow(r, c, rates) {
  const tr = el("tr");
  tr.append(el("td", r), el("td", fmt(c.packets), "num"), el("td", fmt(c.bytes) + "B", "num"),
    el("td", rates ? fmt(rates[r].packets) : "–", "num"));
  return tr;
}

function renderCounters(c, rates) {
  const all = $("#counters tbody"), drops = $("#drops tbody");
  all.replaceChildren(); drops.replaceChildren();
  for (const r of Object.keys(c)) all.append(counterRow(r, c[r], rates));
  Object.keys(c).filter(isDrop).sort((a, b) => c[b].packets - c[a].packets)
    .forEach((r) => drops.append(counterRow(r, c[r], rates)));
}

function renderMaps(maps) {
  const tb = $("#maps tbody");
  tb.replaceChildren();
  for (const [name, m] of Object.entries(maps).sort()) {
    const tr = el("tr");
    const pct = m.capacity ? (100 * m.entries / m.capacity) : 0;
    const bar = el("div", null, "bar"), fill = el("span", null, pct > 80 ? "hot" : "");
    fill.style.width = Math.min(100, Math.max(pct, m.entries ? 1 : 0)) + "%";
    bar.append(fill);
    const cell = el("td"); cell.append(bar); cell.title = pct.toFixed(2) + "%";
    tr.append(el("td", name), el("td", fmt(m.entries), "num"), el("td", fmt(m.capacity), "num"), cell);
    tb.append(tr);
  }
  loadBlocked();
}

async function loadBlocked() {
  if (loadBlocked.busy) return;
  loadBlocked.busy = true;
  try {
    const page = await api("GET", "/api/v1/rules?kind=blacklist&limit=20");
    const ul = $("#blocked");
    ul.replaceChildren();
    page.items.forEach((r) => ul.append(el("li", r.cidr + (r.expires ? "  (expires " + new Date(r.expires * 1000).toLocaleString() + ")" : ""))));
    if (!page.items.length) ul.append(el("li", "none", "empty"));
    $("#bl-count").textContent = "(" + page.total + (page.total > page.items.length ? ", first " + page.items.length + " shown" : "") + ")";
  } catch (e) { /* shown by poll */ } finally { loadBlocked.busy = false; }
}

function drawChart() {
  const canvas = $("#chart");
  if (!canvas || canvas.offsetParent === null) return;
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const css = getComputedStyle(document.documentElement);
  const left = 52, right = 8, top = 8, bottom = 22;
  const pw = w - left - right, ph = h - top - bottom;
  const data = state.history;
  let max = 1;
  data.forEach((d) => { max = Math.max(max, d.pass, d.drop); });
  const nice = Math.pow(10, Math.floor(Math.log10(max)));
  max = Math.ceil(max / nice) * nice;
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = css.getPropertyValue("--muted");
  ctx.strokeStyle = css.getPropertyValue("--line");
  ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = top + ph - (ph * i) / 4;
    ctx.beginPath(); ctx.moveTo(left, y + 0.5); ctx.lineTo(left + pw, y + 0.5); ctx.stroke();
    ctx.fillText(fmt((max * i) / 4), 4, y + 4);
  }
  const span = (HISTORY - 1) * POLL_MS / 1000;
  ctx.fillText("-" + Math.round(span / 60) + " min", left, h - 6);
  ctx.fillText("now", left + pw - 20, h - 6);
  if (data.length < 2) {
    ctx.fillText(data.length ? "collecting…" : "waiting for the first samples…", left + 10, top + 16);
    return;
  }
  const tNow = data[data.length - 1].t;
  const x = (t) => left + pw - ((tNow - t) / span) * pw;
  const y = (v) => top + ph - (v / max) * ph;
  for (const [key, color] of [["pass", "--pass"], ["drop", "--drop"]]) {
    ctx.strokeStyle = css.getPropertyValue(color);
    ctx.lineWidth = 2;
    ctx.beginPath();
    data.forEach((d, i) => { if (i === 0) ctx.moveTo(x(d.t), y(d[key])); else ctx.lineTo(x(d.t), y(d[key])); });
    ctx.stroke();
  }
}

// ---------------------------------------------------------------- rules
function pager(kind, page, reload) {
  const box = document.querySelector('.pager[data-kind="' + kind + '"]');
  box.replaceChildren();
  if (page.total <= PAGE && state.pages[kind] === 0) { if (page.total) box.append(el("span", page.total + " in all")); return; }
  const prev = el("button", "‹ prev", "ghost"), next = el("button", "next ›", "ghost");
  prev.disabled = page.offset === 0;
  next.disabled = page.offset + page.items.length >= page.total;
  prev.onclick = () => { state.pages[kind] = Math.max(0, state.pages[kind] - 1); reload(); };
  next.onclick = () => { state.pages[kind]++; reload(); };
  box.append(prev, el("span", (page.offset + 1) + "–" + (page.offset + page.items.length) + " of " + page.total), next);
}

function removeButton(label, query) {
  const b = el("button", "remove", "remove");
  b.setAttribute("aria-label", "remove " + label);
  b.dataset.rule = label;
  b.onclick = async () => {
    b.disabled = true;
    try {
      await api("DELETE", "/api/v1/rules?" + new URLSearchParams(query).toString());
      toast("removed " + label, true);
      loadRules();
    } catch (e) { toast(e.message); b.disabled = false; }
  };
  const td = el("td"); td.append(b);
  return td;
}

// one table per rule kind: its cells, the fields that name a rule (the DELETE query) and its label
const RULE_TABLES = {
  blacklist: { id: "#bl-table", cells: (r) => [r.cidr, r.expires ? new Date(r.expires * 1000).toLocaleString() : "never"],
    key: (r) => ({ cidr: r.cidr }), label: (r) => r.cidr },
  whitelist: { id: "#wl-table", cells: (r) => [r.cidr], key: (r) => ({ cidr: r.cidr }), label: (r) => r.cidr },
  port: { id: "#port-table", cells: (r) => [r.source, r.proto, r.ports, r.action],
    key: (r) => ({ proto: r.proto, ports: r.ports, source: r.source }),
    label: (r) => r.proto + " " + r.ports + " from " + r.source, rule: (r) => [r.source, r.proto, r.ports].join(" ") },
  ratelimit: { id: "#rl-table", cells: (r) => [r.source, r.rate, r.burst, r.syn_only ? "yes" : "no", r.ban_ttl || "none"],
    key: (r) => ({ source: r.source }), label: (r) => "rate limit of " + r.source, rule: (r) => r.source },
};

async function loadKind(kind) {
  const q = new URLSearchParams({ kind, limit: PAGE, offset: state.pages[kind] * PAGE });
  const search = $("#rule-search").value.trim();
  if (search) q.set("search", search);
  const page = await api("GET", "/api/v1/rules?" + q.toString());
  const table = RULE_TABLES[kind];
  const tb = document.querySelector(table.id + " tbody");
  tb.replaceChildren();
  for (const r of page.items) {
    const tr = el("tr");
    tr.dataset.rule = table.rule ? table.rule(r) : r.cidr;
    tr.append(...table.cells(r).map((c) => el("td", String(c))), removeButton(table.label(r), Object.assign({ kind }, table.key(r))));
    tb.append(tr);
  }
  if (!page.items.length) tb.append(emptyRow(table.cells({}).length + 1, search ? "no match" : "no rules"));
  pager(kind, page, () => loadKind(kind));
}

async function loadRules() {
  try { await Promise.all(Object.keys(RULE_TABLES).map(loadKind)); } catch (e) { if (e.message !== "unauthorized") toast(e.message); }
}

async function addRule(body, form) {
  try {
    const res = await api("POST", "/api/v1/rules", body);
    toast(res.changed ? "added" : "already there", true);
    form.reset();
    loadRules();
  } catch (e) { toast(e.message); }
}

// ---------------------------------------------------------------- conntrack
async function loadConntrack() {
  const q = new URLSearchParams({ limit: PAGE, offset: state.pages.conntrack * PAGE });
  const search = $("#ct-search").value.trim();
  if (search) q.set("search", search);
  if ($("#ct-live").checked) q.set("live", "true");
  let page;
  try { page = await api("GET", "/api/v1/conntrack?" + q.toString()); } catch (e) { if (e.message !== "unauthorized") toast(e.message); return; }
  const tb = $("#ct-table tbody");
  tb.replaceChildren();
  const hp = (a, p, fam) => (fam === 6 ? "[" + a + "]" : a) + ":" + p;
  for (const f of page.items) {
    const tr = el("tr");
    tr.append(el("td", f.proto), el("td", hp(f.remote, f.remote_port, f.family)), el("td", hp(f.local, f.local_port, f.family)),
      el("td", f.age.toFixed(1) + " s", "num"), el("td", f.live ? "live" : "stale"));
    tb.append(tr);
  }
  if (!page.items.length) tb.append(emptyRow(5, page.loaded ? "no tracked flows" : "data plane not loaded"));
  $("#ct-summary").textContent = page.loaded ? page.total + " flows, capacity " + fmt(page.capacity) : "";
  pager("conntrack", page, loadConntrack);
}

// ---------------------------------------------------------------- settings
async function loadSettings() {
  let view;
  try { view = await api("GET", "/api/v1/settings"); } catch (e) { if (e.message !== "unauthorized") toast(e.message); return; }
  const s = view.active || view.stored || {};
  $("#set-policy").value = s.policy || "allow";
  $("#set-icmp-rate").value = s.icmp_rate ?? 0;
  $("#set-icmp-burst").value = s.icmp_burst ?? 0;
  $("#set-conntrack").checked = !!s.conntrack;
  $("#set-ct-timeout").value = s.conntrack_timeout ?? 300;
  $("#settings-note").textContent = view.deployed ? (view.active ? "Shown: what the data plane applies now." : "Not loaded: shown are the stored settings.")
    : "The data plane is not deployed on this host (no config.json).";
}

async function saveSettings(ev) {
  ev.preventDefault();
  const body = {
    policy: $("#set-policy").value, icmp_rate: parseInt($("#set-icmp-rate").value || "0", 10),
    icmp_burst: parseInt($("#set-icmp-burst").value || "0", 10), conntrack: $("#set-conntrack").checked,
    conntrack_timeout: parseInt($("#set-ct-timeout").value || "300", 10),
  };
  try {
    const res = await api("PUT", "/api/v1/settings", body);
    toast(res.changed ? "applied: " + (res.actions.join(", ") || "stored") : "no change", true);
    loadSettings();
  } catch (e) { toast(e.message); }
}

// ---------------------------------------------------------------- wiring
document.addEventListener("DOMContentLoaded", () => {
  $("#login-form").addEventListener("submit", login);
  $("#logout").addEventListener("click", () => logout());
  document.querySelectorAll(".tab").forEach((b) => b.addEventListener("click", () => showTab(b.dataset.tab)));
  $("#bl-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const body = { kind: "blacklist", cidr: $("#bl-cidr").value.trim() };
    const ttl = $("#bl-ttl").value.trim();
    if (ttl) body.ttl = Number(ttl);
    addRule(body, ev.target);
  });
  $("#wl-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    addRule({ kind: "whitelist", cidr: $("#wl-cidr").value.trim() }, ev.target);
  });
  $("#port-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const body = { kind: "port", proto: $("#port-proto").value, ports: $("#port-ports").value.trim(), action: $("#port-action").value };
    const src = $("#port-source").value.trim();
    if (src) body.source = src;
    addRule(body, ev.target);
  });
  $("#rl-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const body = { kind: "ratelimit", source: $("#rl-source").value.trim(), rate: Number($("#rl-rate").value) };
    if ($("#rl-burst").value.trim()) body.burst = Number($("#rl-burst").value);
    if ($("#rl-ban").value.trim()) body.ban_ttl = Number($("#rl-ban").value);
    if ($("#rl-syn").checked) body.syn_only = true;
    addRule(body, ev.target);
  });
  let searchTimer = null;
  $("#rule-search").addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => { Object.keys(state.pages).forEach((k) => { state.pages[k] = 0; }); loadRules(); }, 250);
  });
  $("#rule-refresh").addEventListener("click", loadRules);
  $("#ct-refresh").addEventListener("click", loadConntrack);
  $("#ct-live").addEventListener("change", loadConntrack);
  $("#ct-search").addEventListener("input", () => { state.pages.conntrack = 0; loadConntrack(); });
  $("#settings-form").addEventListener("submit", saveSettings);
  window.addEventListener("resize", drawChart);
  if (sessionStorage.getItem(TOKEN_KEY)) start();
});
