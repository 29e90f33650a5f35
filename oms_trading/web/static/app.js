// oms_trading console: plain JavaScript, no build step. Talks to the JSON API with the bearer
// token kept in sessionStorage (this tab only).
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
const TOKEN_KEY = "oms_token";
let me = null;
let limitsData = null;
let timers = [];
let view = 0;        // bumped by show() and logout(): a page whose first load ends later starts no timers

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k === "width") node.style.width = v;   // CSSOM, allowed by the CSP (style attributes are not)
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  return node;
}

function toast(message, kind = "") {
  const box = el("div", { class: "msg " + kind, text: message, title: "click to dismiss" });
  box.addEventListener("click", () => box.remove());
  $("#toast").append(box);
  setTimeout(() => box.remove(), kind === "err" ? 8000 : 4000);
}

class ApiError extends Error {
  constructor(status, message, body) { super(message); this.status = status; this.body = body; }
}

async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + sessionStorage.getItem(TOKEN_KEY) };
  const init = { method, headers };
  if (body !== undefined) { headers["Content-Type"] = "application/json"; init.body = JSON.stringify(body); }
  const resp = await fetch(path, init);
  const ctype = resp.headers.get("Content-Type") || "";
  const data = ctype.startsWith("application/json") ? await resp.json() : await resp.blob();
  if (resp.status === 401 && path !== "/api/me") { logout("Your token is no longer accepted: sign in again."); }
  if (!resp.ok) throw new ApiError(resp.status, (data && data.error) || resp.statusText, data);
  return { status: resp.status, data, headers: resp.headers };
}

function fail(err) { toast(err.message || String(err), "err"); }

// -- time helpers ---------------------------------------------------------------------------------
// The audit rows carry "time", ISO 8601 UTC with all nine digits of the ns: "ts" is a JSON number,
// and a double keeps ns since 1970 only to ~256 ns (an event at .645836938 read .645837).
function fmtTs(ns, iso) {
  if (iso) return iso.replace("T", " ").replace(/Z$/, "");
  if (ns === null || ns === undefined) return "";
  const n = BigInt(ns);
  const ms = Number(n / 1000000n);
  const rest = String(n % 1000000000n).padStart(9, "0");
  return new Date(ms).toISOString().slice(0, 19).replace("T", " ") + "." + rest.slice(0, 6);
}
function localToIso(value) { return value ? value + (value.length === 16 ? ":00" : "") + "Z" : ""; }

// -- confirmation dialog -----------------------------------------------------------------------------
// resolves true/false, or (askReason) the reason typed in, or null when canceled
function confirmDialog(title, text, okLabel = "Confirm", askReason = false) {
  const dlg = $("#confirm");
  $("#confirm-title").textContent = title;
  $("#confirm-text").textContent = text;
  $("#confirm-ok").textContent = okLabel;
  $("#confirm-reason-wrap").hidden = !askReason;
  $("#confirm-reason").value = "";
  return new Promise((resolve) => {
    dlg.addEventListener("close", () => {
      const ok = dlg.returnValue === "ok";
      if (!askReason) return resolve(ok);
      const reason = $("#confirm-reason").value.trim();
      if (ok && !reason) toast("A reason is required; nothing was changed.", "err");
      resolve(ok && reason ? reason : null);
    }, { once: true });
    dlg.returnValue = "";
    dlg.showModal();
  });
}

// -- login ----------------------------------------------------------------------------------------------
async function login(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
  try {
    me = (await api("GET", "/api/me")).data;
  } catch (err) {
    sessionStorage.removeItem(TOKEN_KEY);
    const msg = err.status === 401 ? "That token is not known. Check it and try again." : err.message;
    $("#login-error").textContent = msg;
    $("#login-error").hidden = false;
    return;
  }
  $("#login-error").hidden = true;
  $("#login").hidden = true;
  $("#who-name").textContent = me.user;
  $("#who-role").textContent = me.role;
  $("#who").hidden = false;
  $("#tabs").hidden = false;
  let first = null;
  for (const tab of $$(".tab")) {
    const allowed = tab.dataset.roles.split(" ").includes(me.role);
    tab.hidden = !allowed;
    if (allowed && !first) first = tab.dataset.page;
  }
  const wanted = location.hash.slice(1);
  const tab = $$(".tab").find((t) => t.dataset.page === wanted && !t.hidden);
  show(tab ? wanted : first);
}

function logout(message) {
  view++;
  sessionStorage.removeItem(TOKEN_KEY);
  me = null;
  timers.forEach(clearInterval);
  timers = [];
  $$(".page").forEach((p) => (p.hidden = true));
  $("#tabs").hidden = true;
  $("#who").hidden = true;
  $("#login").hidden = false;
  $("#token").value = "";
  if (message) { $("#login-error").textContent = message; $("#login-error").hidden = false; }
}

function show(page) {
  view++;
  timers.forEach(clearInterval);
  timers = [];
  $$(".page").forEach((p) => (p.hidden = p.id !== "page-" + page));
  $$(".tab").forEach((t) => t.classList.toggle("active", t.dataset.page === page));
  history.replaceState(null, "", "#" + page);
  if (page === "risk") initRisk();
  if (page === "positions") initPositions();
  if (page === "compliance") initCompliance();
}

// -- risk desk -------------------------------------------------------------------------------------------
async function initRisk() {
  const mine = view;
  await loadLimits(true);
  if (mine !== view) return;     // logged out or left while the limits loaded: start no refresh
  loadApprovals();
  loadExposure();
  timers.push(setInterval(loadExposure, 2000));
  timers.push(setInterval(loadApprovals, 5000));
  // kill switches, halts and temporary limits change under other users and the clock too
  timers.push(setInterval(() => loadLimits(), 5000));
}

function scopeKind(scope) {
  if (scope === "default") return "default";
  if (scope.includes("/")) return "pair";
  return scope.split(":")[0];
}

async function loadLimits(first = false, force = false) {
  const scopeSel = $("#lim-scope");
  const current = scopeSel.value || "default";
  const kind = scopeKind(current);
  const name = current.split(":")[1];
  const q = kind === "account" ? "?account=" + encodeURIComponent(name)
    : kind === "instrument" ? "?symbol=" + encodeURIComponent(name) : "";
  let data;
  try { data = (await api("GET", "/api/risk/limits" + q)).data; } catch (err) { return fail(err); }
  limitsData = data;
  $("#lim-factor").textContent = data.four_eyes_factor;
  if (first || scopeSel.options.length === 0) {
    // account x instrument: the per-account restricted list (a flag of that pair only)
    const pairs = el("optgroup", { label: "Account on one instrument (restricted list)" },
      ...data.accounts.flatMap((a) => data.instruments.map((s) =>
        el("option", { value: `account:${a}/instrument:${s}`, text: `Account ${a} on ${s}` }))));
    scopeSel.replaceChildren(el("option", { value: "default", text: "Defaults (every account)" }),
      ...data.accounts.map((a) => el("option", { value: "account:" + a, text: "Account " + a })),
      ...data.instruments.map((s) => el("option", { value: "instrument:" + s, text: "Instrument " + s })), pairs);
    scopeSel.value = current;
    fillKillTargets();
  }
  const editing = document.activeElement && $("#limits").contains(document.activeElement);
  if (force || !editing) renderLimits(current, data);   // an edit in progress survives a refresh
  renderKill(data);
  renderInstruments(data);
}

function renderLimits(scope, data) {
  const kind = scopeKind(scope);
  const own = data.layers[scope] || {};
  const eff = Object.fromEntries(data.effective.limits.map((r) => [r.limit, r]));
  const temporary = Object.fromEntries(data.pending_expiries.filter((p) => p.scope === scope).map((p) => [p.limit, p]));
  const rows = [];
  for (const item of data.catalog) {
    if (!item.scopes.includes(kind)) continue;
    const isFlag = item.kind === "bool";
    const mine = own[item.limit];
    let input;
    if (isFlag) {
      input = el("select", { "data-limit": item.limit, "aria-label": item.limit },
        el("option", { value: "false", text: "no" }), el("option", { value: "true", text: "yes" }));
      input.value = mine === "true" ? "true" : "false";
    } else {
      input = el("input", { "data-limit": item.limit, "aria-label": item.limit, value: mine ?? "",
        placeholder: kind === "default" ? "" : "inherits", inputmode: "decimal" });
    }
    const save = el("button", { class: "secondary small", text: "Save" });
    const submit = () => saveLimit(scope, item.limit, isFlag ? input.value === "true" : input.value.trim());
    save.addEventListener("click", submit);
    input.addEventListener("keydown", (e) => { if (e.key === "Enter") submit(); });
    const e = eff[item.limit];
    // a pair's restricted flag is also in force from the instrument's (global) restricted list
    const flagAt = !isFlag ? "" : mine === "true" ? scope
      : kind === "pair" && (data.layers[scope.split("/")[1]] || {})[item.limit] === "true" ? scope.split("/")[1] : "";
    const inForce = isFlag ? (flagAt ? "yes" : "no") : (e ? e.value : "");
    const temp = temporary[item.limit];
    const source = (isFlag ? flagAt : (e ? e.source : ""))
      + (temp ? ` — temporary until ${fmtTs(temp.expires_ts)}, then ${temp.restore_value ?? "inherited"}` : "");
    rows.push(el("tr", { "data-row": item.limit },
      el("td", {}, el("div", { class: "name", text: item.limit }), el("div", { class: "desc small muted", text: item.description })),
      el("td", {}, input),
      el("td", { class: "num" + (mine === undefined ? " inherited" : ""), text: inForce }),
      el("td", { class: "small muted", text: source }),
      el("td", {}, save)));
  }
  $("#limits").replaceChildren(...rows);
  $("#lim-note").textContent = kind === "instrument"
    ? "In force: for accounts without a value of their own. Where an account has one, both are checked and the stricter binds (see that account's scope)."
    : kind === "account" ? "In force: the account's value on instruments without one of their own; where an instrument has one, the stricter binds."
    : "";
}

async function saveLimit(scope, limit, value) {
  const reason = $("#lim-reason").value.trim();
  if (!reason) { toast("Give a reason for the change first (the field above the table).", "err"); $("#lim-reason").focus(); return; }
  const body = { scope, limit, value: value === "" ? null : value, reason };
  const exp = $("#lim-expires").value.trim();
  if (exp) body.expires_in_s = Number(exp);
  try {
    const { status, data } = await api("PUT", "/api/risk/limits", body);
    if (status === 202) toast(`Needs a second risk user: ${data.approval.why}. Request ${data.approval.id} is pending.`);
    else toast(`${limit} at ${scope}: ${data.event.old_value ?? "inherited"} → ${data.event.new_value ?? "inherited"}`
      + (body.expires_in_s ? ` for ${body.expires_in_s} s` : ""), "ok");
    $("#lim-expires").value = "";      // an expiry is for that change only, never carried to the next
  } catch (err) { fail(err); return; }   // the value typed stays in its field, to be corrected
  await loadLimits(false, true);
  loadApprovals();
}

function fillKillTargets() {
  const kind = $("#ks-kind").value;
  const sel = $("#ks-target");
  const opts = { account: limitsData.accounts, instrument: limitsData.instruments, session: limitsData.sessions }[kind] || [];
  sel.replaceChildren(...opts.map((o) => el("option", { value: o, text: o })));
  $("#ks-target-wrap").hidden = kind === "global";
}

function killScope() {
  const kind = $("#ks-kind").value;
  return kind === "global" ? "global" : kind + ":" + $("#ks-target").value;
}

async function killSwitch(action) {
  const scope = killScope();
  const reason = $("#ks-reason").value.trim();
  if (!reason) { toast("Give a reason for the kill switch action.", "err"); $("#ks-reason").focus(); return; }
  const text = action === "engage"
    ? `Engage the kill switch for ${scope}? Every resting order in scope is canceled and new orders are rejected.`
    : `Release the kill switch for ${scope}? Trading in scope resumes.` + (scope === "global" ? " A second risk user must approve." : "");
  if (!(await confirmDialog(action === "engage" ? "Engage kill switch" : "Release kill switch", text,
    action === "engage" ? "Engage" : "Release"))) return;
  try {
    const { status, data } = await api("POST", "/api/risk/kill-switch", { scope, action, reason });
    if (status === 202) toast(`Release of ${scope} waits for a second risk user (request ${data.approval.id}).`);
    else if (action === "engage") toast(`Kill switch ${scope} engaged; ${data.canceled_orders.length} order(s) canceled.`, "ok");
    else toast(`Kill switch ${scope} released.`, "ok");
  } catch (err) { fail(err); }
  loadLimits();
  loadApprovals();
}

function renderKill(data) {
  const items = data.kill_switches.map((s) => el("li", { text: s }));
  $("#ks-engaged").replaceChildren(...(items.length ? items : [el("li", { class: "none", text: "none engaged" })]));
}

function renderInstruments(data) {
  const rows = data.instruments.map((sym) => {
    const halted = data.halted.includes(sym);
    const killed = data.kill_switches.includes("instrument:" + sym) || data.kill_switches.includes("global");
    const restricted = (data.layers["instrument:" + sym] || {}).restricted === "true";
    const state = [halted ? "Halted" : "", killed ? (data.kill_switches.includes("global") ? "Kill switch (global)" : "Kill switch") : "",
      restricted ? "Restricted" : ""].filter(Boolean).join(", ") || "Trading";
    const btn = el("button", { class: halted ? "secondary small" : "danger small", text: halted ? "Resume" : "Halt" });
    btn.addEventListener("click", () => haltResume(sym, halted ? "resume" : "halt"));
    return el("tr", {}, el("td", { class: "name", text: sym }),
      el("td", { class: "state " + (halted || killed || restricted ? "bad" : "ok"), text: state }), el("td", {}, btn));
  });
  $("#instruments").replaceChildren(...rows);
}

async function haltResume(sym, action) {
  const reason = await confirmDialog(action === "halt" ? `Halt ${sym}` : `Resume ${sym}`,
    action === "halt" ? `New orders in ${sym} will be rejected until it is resumed.` : `Trading in ${sym} resumes.`,
    action === "halt" ? "Halt" : "Resume", true);
  if (!reason) return;
  try {
    await api("POST", `/api/risk/instruments/${encodeURIComponent(sym)}/${action}`, { reason });
    toast(`${sym} ${action === "halt" ? "halted" : "resumed"}.`, "ok");
  } catch (err) { fail(err); }
  loadLimits();
}

async function loadApprovals() {
  let data;
  try { data = (await api("GET", "/api/risk/approvals")).data; } catch (err) { return; }
  const rows = data.approvals.map((a) => {
    const r = a.request;
    const what = a.kind === "kill_switch" ? `${r.action} kill switch ${r.scope}`
      : `${r.limit} at ${r.scope} → ${r.new_value ?? "inherit"}` + (r.expires_in_s ? ` for ${r.expires_in_s}s` : "");
    const mine = me && a.requested_by === me.user;
    const ok = el("button", { class: "primary small", text: "Approve", disabled: mine,
      title: mine ? "You cannot approve your own request" : "Apply it now, with you as approver" });
    const no = el("button", { class: "secondary small", text: mine ? "Withdraw" : "Reject" });
    ok.addEventListener("click", () => decide(a, "approve"));
    no.addEventListener("click", () => decide(a, "reject"));
    return el("tr", {}, el("td", { text: a.requested_by }), el("td", {}, what, el("div", { class: "small muted", text: "Reason: " + r.reason })),
      el("td", { class: "small", text: a.why }), el("td", {}, el("div", { class: "row" }, ok, no)));
  });
  $("#approvals").replaceChildren(...rows);
  $("#approvals-empty").hidden = rows.length > 0;
}

async function decide(a, how) {
  try {
    await api("POST", `/api/risk/approvals/${a.id}/${how}`);
    toast(how === "approve" ? "Approved and applied." : "Request rejected.", "ok");
  } catch (err) { fail(err); }
  loadApprovals();
  loadLimits();
}

async function loadExposure() {
  let data;
  const badge = $("#exposure-live");
  try { data = (await api("GET", "/api/exposure")).data; } catch (err) {
    if (!badge.classList.contains("stale")) {      // say so once, keep the time the numbers are from
      badge.classList.add("stale");
      badge.textContent = "stale since " + new Date().toISOString().slice(11, 19) + " UTC";
      badge.title = "the exposure feed failed: " + (err.message || err);
    }
    return;
  }
  badge.classList.remove("stale");
  badge.textContent = "live";
  badge.title = "refreshes every 2 seconds";
  const rows = data.exposure.map((x) => {
    const limit = x.credit_limit ? Number(x.credit_limit) : 0;
    const pct = limit ? Math.min(100, (Number(x.gross_exposure) / limit) * 100) : 0;
    const flags = [x.kill_switch ? "kill switch" : "", x.reduce_only ? "reduce-only" : ""].filter(Boolean).join(", ");
    return el("tr", { "data-account": x.account }, el("td", { class: "name", text: x.account }),
      el("td", { class: "num", text: x.open_notional }), el("td", { class: "num", text: x.filled_notional_today }),
      el("td", { class: "num gross", text: x.gross_exposure }), el("td", { class: "num", text: x.credit_limit ?? "off" }),
      el("td", { title: pct.toFixed(1) + "%" }, el("div", { class: "bar" + (pct > 80 ? " hot" : "") }, el("span", { width: pct + "%" }))),
      el("td", { class: flags ? "state bad" : "muted", text: flags || "—" }));
  });
  $("#exposure").replaceChildren(...rows);
  // the credit limit sums every instrument in one currency ([risk] base_currency)
  if (data.exposure.length) $("#exposure-ccy").textContent = "(" + data.exposure[0].currency + ")";
}

// -- positions and books ---------------------------------------------------------------------------------
let posInit = false;
async function initPositions() {
  if (!posInit) {
    posInit = true;
    $("#pos-account").append(...me.accounts.map((a) => el("option", { value: a, text: a })));
    $("#book-symbol").append(...me.instruments.map((s) => el("option", { value: s, text: s })));
    $("#pos-account").addEventListener("change", loadPositions);
    $("#book-symbol").addEventListener("change", loadBook);
  }
  loadPositions();
  loadBook();
  timers.push(setInterval(() => { loadPositions(); loadBook(); }, 2000));
}

async function loadPositions() {
  const acct = $("#pos-account").value;
  const q = acct ? "?account=" + encodeURIComponent(acct) : "";
  try {
    const pos = (await api("GET", "/api/positions" + q)).data.positions;
    $("#positions").replaceChildren(...pos.map((p) => el("tr", {}, el("td", { text: p.account }), el("td", { class: "name", text: p.symbol }),
      el("td", { class: "num", text: p.position }), el("td", { class: "num", text: p.bought_qty }), el("td", { class: "num", text: p.sold_qty }),
      el("td", { class: "num", text: p.open_buy_qty }), el("td", { class: "num", text: p.open_sell_qty }))));
    $("#positions-empty").hidden = pos.length > 0;
    const orders = (await api("GET", "/api/orders" + q)).data.orders;
    $("#orders").replaceChildren(...orders.slice(0, 200).map((o) => el("tr", {}, el("td", { text: o.cl_ord_id }), el("td", { text: o.account }),
      el("td", { text: o.symbol }), el("td", { text: o.side === "1" ? "Buy" : "Sell" }), el("td", { class: "num", text: o.price ?? "MKT" }),
      el("td", { class: "num", text: o.leaves_qty }))));
  } catch (err) { /* shown on the next user action */ }
}

async function loadBook() {
  const sym = $("#book-symbol").value;
  if (!sym) return;
  try {
    const b = (await api("GET", `/api/books/${encodeURIComponent(sym)}?levels=10`)).data;
    const n = Math.max(b.bids.length, b.asks.length, 1);
    const rows = [];
    for (let i = 0; i < n; i++) {
      const bid = b.bids[i] || {}, ask = b.asks[i] || {};
      rows.push(el("tr", {}, el("td", { class: "num", text: bid.qty ?? "" }), el("td", { class: "num", text: bid.price ?? "" }),
        el("td", { class: "num", text: ask.price ?? "" }), el("td", { class: "num", text: ask.qty ?? "" })));
    }
    $("#book").replaceChildren(...rows);
  } catch (err) { /* ignore */ }
}

// -- compliance -----------------------------------------------------------------------------------------
const EVENTS = ["order_received", "order_accepted", "order_rejected", "order_partially_filled", "order_filled",
  "order_canceled", "order_replaced", "order_expired", "cancel_rejected", "replace_rejected", "limit_changed",
  "limit_change_rejected", "limit_expired", "kill_switch_engaged", "kill_switch_released", "session_logon", "session_logout"];
let compInit = false;
function initCompliance() {
  if (compInit) return;
  compInit = true;
  $("#search-event").append(...EVENTS.map((e) => el("option", { value: e, text: e })));
}

function detail(r) {
  if (r.text) return r.text + (r.rule ? ` [${r.rule}]` : "");
  if (r.type && r.type.startsWith("limit")) return `${r.scope} ${r.limit ?? (r.details && r.details.limit) ?? ""}: ${r.old_value ?? "—"} → ${r.new_value ?? "—"} (${r.reason ?? ""})`;
  if (r.type && r.type.startsWith("kill")) return `${r.scope}: ${r.reason ?? ""}`;
  if (r.last_qty) return `${r.last_qty} @ ${r.last_px}`;
  return "";
}

let searchOffset = 0;          // the page of results shown (the API's offset)

async function search(ev, offset = 0) {
  if (ev) ev.preventDefault();
  searchOffset = offset;
  const form = new FormData($("#search-form"));
  const params = new URLSearchParams();
  if (offset) params.set("offset", String(offset));
  for (const [k, v] of form.entries()) {
    const value = String(v).trim();
    if (!value) continue;
    params.set(k, k === "from" || k === "to" ? localToIso(value) : value);
  }
  $("#search-status").textContent = "Searching…";
  try {
    const data = (await api("GET", "/api/audit/search?" + params)).data;
    $("#search-status").textContent = (data.count ? `events ${offset + 1}-${offset + data.count}` : "0 events")
      + (data.more ? " (more on the next page)" : "")
      + (data.projection_lag ? ` — audit projection ${data.projection_lag} event(s) behind` : "");
    $("#search-prev").hidden = offset === 0;
    $("#search-next").hidden = !data.more;
    $("#search-next").onclick = () => search(null, offset + data.limit);
    $("#search-prev").onclick = () => search(null, Math.max(0, offset - data.limit));
    $("#search-results").replaceChildren(...data.rows.map((r) => {
      const oid = r.order_id ? el("a", { class: "oid", text: r.order_id, title: "Show lifecycle" }) : "";
      if (oid) oid.addEventListener("click", () => { $("#life-id").value = r.order_id; $("#life-by").value = "order_id"; lifecycle(); });
      return el("tr", {}, el("td", { class: "num", text: r.seq }), el("td", { text: fmtTs(r.ts, r.time) }), el("td", { text: r.type }),
        el("td", { text: r.account ?? "" }), el("td", { text: r.symbol ?? "" }), el("td", { text: r.side === "1" ? "Buy" : r.side ? "Sell" : "" }),
        el("td", { class: "num", text: r.qty ?? "" }), el("td", { class: "num", text: r.price ?? "" }), el("td", { text: r.cl_ord_id ?? "" }),
        el("td", {}, oid), el("td", { text: r.user ? r.user + (r.approver ? " + " + r.approver : "") : "" }),
        el("td", { class: "detail", text: detail(r) }));
    }));
  } catch (err) {
    $("#search-results").replaceChildren();     // no rows of an earlier query under this error
    $("#search-prev").hidden = $("#search-next").hidden = true;
    $("#search-status").textContent = err.message; fail(err);
  }
}

async function lifecycle(ev) {
  if (ev) ev.preventDefault();
  const id = $("#life-id").value.trim();
  if (!id) return;
  const by = $("#life-by").value;            // a ClOrdID may be all digits: the user says which it is
  const params = new URLSearchParams({ [by]: id });
  const session = $("#life-session").value.trim();
  if (session) params.set("session", session);
  try {
    const data = (await api("GET", "/api/audit/lifecycle?" + params)).data;
    const first = data.events.find((e) => e.order_id) || data.events[0];
    $("#life-title").textContent = first ? `Order ${first.order_id ?? "—"} · ClOrdID ${first.cl_ord_id ?? "—"}`
      + ` · ${first.session ?? ""} · ${first.account ?? ""} ${first.symbol ?? ""}` : "no events";
    $("#timeline").replaceChildren(...data.events.map((e) => {
      const cls = e.type.includes("reject") ? "bad" : e.type.includes("fill") ? "fill" : e.type.endsWith("_requested") || e.type === "order_received" ? "cmd" : "";
      const qty = e.qty ? `${e.side === "1" ? "Buy" : "Sell"} ${e.qty} ${e.symbol ?? ""} @ ${e.price ?? "MKT"}` : "";
      const state = e.cum_qty !== undefined && e.cum_qty !== null ? ` · filled ${e.cum_qty}, leaves ${e.leaves_qty}` : "";
      return el("li", { class: cls }, el("div", { class: "t", text: `${fmtTs(e.ts, e.time)} · seq ${e.seq}` }),
        el("div", { class: "e", text: e.type.replace(/_/g, " ") }), el("div", { class: "d", text: [qty + state, detail(e)].filter(Boolean).join(" — ") }));
    }));
  } catch (err) {
    $("#life-title").textContent = "";
    $("#timeline").replaceChildren(el("li", { class: "bad" }, el("div", { class: "d", text: err.message })));
  }
}

async function download(fmt) {
  const params = new URLSearchParams({ format: fmt });
  if ($("#exp-from").value) params.set("from", localToIso($("#exp-from").value));
  if ($("#exp-to").value) params.set("to", localToIso($("#exp-to").value));
  try {
    const { data, headers } = await api("GET", "/api/audit/export?" + params);
    const m = /filename="([^"]+)"/.exec(headers.get("Content-Disposition") || "");
    const a = el("a", { href: URL.createObjectURL(data), download: m ? m[1] : "audit." + fmt });
    document.body.append(a);
    a.click();
    a.remove();
    toast(`Exported ${headers.get("X-Rows")} row(s) as ${fmt.toUpperCase()}.`, "ok");
  } catch (err) { fail(err); }
}

async function verify() {
  $("#verify-result").textContent = "Verifying…";
  try {
    const data = (await api("GET", "/api/audit/verify")).data;
    $("#verify-result").textContent = data.summary;
    $("#verify-result").className = "small state " + (data.ok ? "ok" : "bad");
  } catch (err) { $("#verify-result").textContent = err.message; }
}

// -- wiring ------------------------------------------------------------------------------------------------
document.addEventListener("DOMContentLoaded", () => {
  $("#login-form").addEventListener("submit", (e) => { e.preventDefault(); login($("#token").value.trim()); });
  $("#logout").addEventListener("click", () => logout());
  $$(".tab").forEach((t) => t.addEventListener("click", () => show(t.dataset.page)));
  $("#lim-scope").addEventListener("change", () => loadLimits());
  $("#ks-kind").addEventListener("change", fillKillTargets);
  $("#ks-engage").addEventListener("click", () => killSwitch("engage"));
  $("#ks-release").addEventListener("click", () => killSwitch("release"));
  $("#search-form").addEventListener("submit", search);
  $("#search-form").addEventListener("reset", () => {
    $("#search-results").replaceChildren(); $("#search-status").textContent = "";
    $("#search-prev").hidden = $("#search-next").hidden = true;
  });
  $("#life-form").addEventListener("submit", lifecycle);
  $$(".export").forEach((b) => b.addEventListener("click", () => download(b.dataset.format)));
  $("#verify").addEventListener("click", verify);
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) login(saved);
});
