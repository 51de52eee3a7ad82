// The delivery console: reads the router's JSON routes with the admin token and draws each
// view with DOM calls only (text is never parsed as HTML). The current view is read again
// every two seconds, and redrawn when it changed.
"use strict";

const KEY = "kfp-event-router-token";
const EVERY_MS = 2000;
let shown = "";
let timer = null;
let generation = 0;

/** An element with attributes and children; strings become text. */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "onclick") node.addEventListener("click", value);
    else if (value !== null && value !== undefined && value !== false) node.setAttribute(name, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" || typeof child === "number" ? String(child) : child);
  }
  return node;
}

/** A table of `rows` under `heads`. */
function table(caption, heads, rows) {
  return el("table", {},
    el("caption", { class: "muted" }, caption),
    el("thead", {}, el("tr", {}, heads.map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: heads.length, class: "muted" }, "Nothing yet."))));
}

function time(ms) { return ms ? new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : ""; }
function tag(kind, text) { return el("span", { class: `${kind} ${text}` }, text); }
function num(value) { return el("td", { class: "num" }, value === null || value === undefined ? "–" : String(value)); }
function link(hash, text) { return el("a", { href: hash }, text); }
function part(value) { return encodeURIComponent(value); }

/** GETs or POSTs JSON with the token; `null` (and the login form) on 401. */
async function api(path, body) {
  const token = sessionStorage.getItem(KEY);
  if (!token) { login(); return null; }
  const response = await fetch(path, {
    method: body ? "POST" : "GET",
    headers: Object.assign({ Authorization: `Bearer ${token}` }, body ? { "Content-Type": "application/json" } : {}),
    body: body ? JSON.stringify(body) : undefined,
  });
  if (response.status === 401) {
    sessionStorage.removeItem(KEY);
    login("The token was refused.");
    return null;
  }
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function login(message) {
  document.getElementById("login").hidden = false;
  document.getElementById("view").replaceChildren();
  document.getElementById("sign-out").hidden = true;
  document.getElementById("login-error").textContent = message || "";
  document.getElementById("token").focus();
}

const views = {
  async endpoints() {
    const data = await api("/admin/console/endpoints");
    if (!data) return null;
    const rows = data.endpoints.map((e) => el("tr", { "data-endpoint": e.name },
      el("th", { scope: "row" }, link(`#deliveries?endpoint=${part(e.name)}`, e.name)),
      el("td", {}, tag("state", e.state)),
      num(e.backlog), num(e.oldest_pending_seconds === null ? null : `${e.oldest_pending_seconds} s`),
      num(e.success_rate === null ? null : `${(e.success_rate * 100).toFixed(1)} %`),
      num(e.p99_ms === null ? null : `${e.p99_ms} ms`), num(e.attempts),
      el("td", {}, e.last_error || "")));
    return [el("h2", {}, "Endpoints"),
      data.history ? null : el("p", { class: "muted" }, "No delivery history is kept (server.console_history = 0)."),
      table("Success rate, p99 latency and attempts over the last hour",
        ["Endpoint", "State", "Backlog", "Oldest pending", "Success", "p99", "Attempts", "Last error"], rows)];
  },

  async deliveries(params) {
    const query = new URLSearchParams(params);
    const data = await api(`/admin/console/deliveries?${query}`);
    if (!data) return null;
    const rows = data.deliveries.map((d) => el("tr", { "data-webhook-id": d.webhook_id, "data-endpoint": d.endpoint },
      el("td", {}, time(d.time_ms)), el("td", {}, d.endpoint),
      el("td", {}, link(`#run/${part(d.run)}`, d.run), d.task ? el("div", { class: "muted" }, d.task) : null),
      el("td", {}, d.reason), el("td", {}, tag("outcome", d.outcome)),
      num(d.attempts), num(d.status), num(d.millis === null ? null : `${d.millis} ms`),
      el("td", {}, link(`#delivery/${part(d.endpoint)}/${part(d.webhook_id)}`, "Details"))));
    return [el("h2", {}, "Recent deliveries"), filters(params),
      table("Newest first", ["Time", "Endpoint", "Run / task", "Reason", "Outcome", "Attempts", "HTTP", "Latency", ""], rows)];
  },

  async delivery(params, endpoint, id) {
    const d = await api(`/admin/console/deliveries/${part(endpoint)}/${part(id)}`);
    if (!d) return null;
    const headers = (list) => el("pre", {}, (list || []).map(([n, v]) => `${n}: ${v}\n`).join(""));
    return [el("h2", {}, `Delivery ${d.webhook_id} to ${d.endpoint}`),
      el("dl", {},
        el("dt", {}, "Outcome"), el("dd", {}, tag("outcome", d.outcome), d.note ? ` ${d.note}` : ""),
        el("dt", {}, "Run"), el("dd", {}, link(`#run/${part(d.run_id || d.workflow)}`, d.run_id || d.workflow)),
        el("dt", {}, "Workflow"), el("dd", {}, d.workflow),
        el("dt", {}, "Task"), el("dd", {}, d.task || "–"),
        el("dt", {}, "Reason"), el("dd", {}, d.reason),
        el("dt", {}, "Message"), el("dd", { class: "message" }, d.message)),
      el("h3", {}, "Attempts"),
      table("Each attempt's timing", ["Sent", "Took", "HTTP", "Result", "Error"], d.attempts.map((a) => el("tr", {},
        el("td", {}, time(a.at_ms)), num(`${a.millis} ms`), num(a.status), el("td", {}, a.class), el("td", {}, a.error || "")))),
      el("h3", {}, "Request headers sent"), d.request ? headers(d.request.headers) : el("p", { class: "muted" }, "Nothing was sent."),
      el("h3", {}, "Request body"), d.request ? el("pre", {}, d.request.body) : null,
      el("h3", {}, `Response${d.response ? ` ${d.response.status}` : ""}`),
      d.response ? [headers(d.response.headers), el("h3", {}, "Response body (first KiB)"), el("pre", {}, d.response.body)]
        : el("p", { class: "muted" }, "No answer.")];
  },

  async runs() {
    const data = await api("/admin/console/runs");
    if (!data) return null;
    const rows = data.runs.map((r) => el("tr", {},
      el("th", { scope: "row" }, link(`#run/${part(r.run)}`, r.run)), el("td", {}, r.workflow),
      el("td", {}, time(r.last_ms)), num(r.deliveries)));
    return [el("h2", {}, "Runs"), table("Most recently active first", ["Run", "Workflow", "Last activity", "Deliveries"], rows)];
  },

  async run(params, run) {
    const data = await api(`/admin/console/runs/${part(run)}`);
    if (!data) return null;
    const endpoints = [...new Set(data.transitions.flatMap((t) => Object.keys(t.endpoints)))].sort();
    const rows = data.transitions.map((t) => el("tr", { "data-webhook-id": t.webhook_id },
      el("td", {}, t.event_time ? t.event_time.replace("T", " ") : time(t.time_ms)), el("td", {}, t.reason), el("td", {}, t.task || ""),
      el("td", { class: "message" }, t.message),
      endpoints.map((name) => {
        const o = t.endpoints[name];
        return el("td", { "data-endpoint": name }, o ? [
          link(`#delivery/${part(name)}/${part(t.webhook_id)}`, o.outcome.replace("_", " ")),
          o.attempts > 1 ? el("span", { class: "muted" }, ` ×${o.attempts}`) : null,
          o.note ? el("div", { class: "muted" }, o.note) : null] : "");
      })));
    return [el("h2", {}, `Run ${data.run}`),
      table("Transitions, oldest first, and what each endpoint got", ["Time", "Reason", "Task", "Message", ...endpoints], rows)];
  },

  async "dead-letters"(params) {
    const query = new URLSearchParams(params);
    query.set("limit", "1000");
    const data = await api(`/admin/dead-letters?${query}`);
    if (!data) return null;
    const redrive = (body) => async () => {
      const report = await api("/admin/dead-letters/redrive", body);
      if (report) document.getElementById("status").textContent = `Redelivered ${report.redriven}.`;
      refresh(true);
    };
    const rows = data.dead_letters.map((d) => el("tr", { "data-id": d.id, "data-endpoint": d.endpoint },
      el("td", {}, d.time), el("td", {}, d.endpoint), el("td", {}, d.workflow), el("td", {}, d.reason),
      num(d.attempts), el("td", {}, d.last_error),
      el("td", {}, el("button", { type: "button", class: "redeliver", onclick: redrive({ ids: [d.id] }) }, "Redeliver"))));
    const filtered = params.endpoint || params.reason;
    return [el("h2", {}, "Dead letters"), filters(params, ["endpoint", "reason"]),
      el("div", { class: "actions" },
        filtered ? el("button", { type: "button", id: "redeliver-filter", onclick: redrive({ endpoint: params.endpoint, reason: params.reason }) }, "Redeliver all matching") : null,
        el("button", { type: "button", id: "redeliver-all", class: "primary", onclick: redrive({ all: true }) }, "Redeliver all")),
      table("Given up, oldest first", ["Given up", "Endpoint", "Workflow", "Reason", "Attempts", "Last error", ""], rows)];
  },

  async plugins() {
    const data = await api("/admin/console/plugins");
    if (!data) return null;
    const loads = data.last_loads || {};
    const rows = data.loaded.map((p) => el("tr", { "data-plugin": p.name },
      el("th", { scope: "row" }, p.name), el("td", {}, p.wit),
      el("td", {}, el("code", { class: "hash" }, p.sha256 || "")),
      el("td", {}, loads[p.name] ? time(loads[p.name].at_ms) : ""),
      num(p.calls), num(p.drops), num(p.errors), num(p.p99_ms === null ? null : `≤ ${p.p99_ms} ms`)));
    const results = Object.entries(loads).map(([name, l]) => el("tr", { "data-plugin": name },
      el("th", { scope: "row" }, name), el("td", {}, time(l.at_ms)),
      el("td", {}, el("span", { class: `outcome ${l.result === "rejected" ? "failing" : "delivered"}` }, l.result)),
      el("td", {}, l.error || "")));
    return [el("h2", {}, "Plugins"),
      table("Loaded", ["Plugin", "WIT", "SHA-256 of the file", "Loaded", "Calls", "Drops", "Errors", "p99 call"], rows),
      el("h3", {}, "Last load of each plugin"), table("Newest result per plugin", ["Plugin", "When", "Result", "Error"], results),
      data.failing && data.failing.length ? [el("h3", {}, "Failing"), el("pre", {}, JSON.stringify(data.failing, null, 2))] : null];
  },
};

/** A filter form for `keys`, filled from `params`; submitting changes the address. */
function filters(params, keys = ["endpoint", "run", "workflow", "reason", "outcome"]) {
  const form = el("form", { class: "filters", role: "search" },
    keys.map((key) => el("label", {}, key, key === "outcome"
      ? el("select", { name: key }, ["", "delivered", "retrying", "dead_lettered", "dropped"].map((o) =>
        el("option", { value: o, selected: params[key] === o }, o || "any")))
      : el("input", { name: key, value: params[key] || "" }))),
    el("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const query = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) query.set(k, v);
    location.hash = `${location.hash.split("?")[0]}?${query}`;
  });
  return form;
}

/** Draws the view the address names; `force` redraws even when nothing changed. */
async function refresh(force) {
  clearTimeout(timer);
  // A slower answer for a view left since must not draw over the newer one.
  const mine = ++generation;
  const [path, query] = (location.hash.slice(1) || "endpoints").split("?");
  const [name, ...args] = path.split("/").map(decodeURIComponent);
  const params = Object.fromEntries(new URLSearchParams(query || ""));
  const view = views[name] || views.endpoints;
  const top = name === "delivery" ? "deliveries" : name === "run" ? "runs" : name;
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.view === top) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  try {
    const content = await view(params, ...args);
    if (mine !== generation) return;
    if (content) {
      const section = el("div", {}, content);
      const key = location.hash + section.innerText;
      const target = document.getElementById("view");
      // A filter being typed in is not redrawn under the typist's fingers.
      const typing = document.activeElement && document.activeElement.closest("form.filters");
      if (force || ((key !== shown || !target.firstChild) && !typing)) {
        target.replaceChildren(section);
        shown = key;
      }
      document.getElementById("status").dataset.updated = String(Date.now());
    }
  } catch (error) {
    if (mine !== generation) return;
    document.getElementById("status").textContent = `Cannot read: ${error.message}`;
  }
  if (sessionStorage.getItem(KEY)) timer = setTimeout(() => refresh(false), EVERY_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("login").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, document.getElementById("token").value.trim());
    document.getElementById("token").value = "";
    document.getElementById("login").hidden = true;
    document.getElementById("sign-out").hidden = false;
    refresh(true);
  });
  document.getElementById("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    clearTimeout(timer);
    login();
  });
  window.addEventListener("hashchange", () => refresh(true));
  if (sessionStorage.getItem(KEY)) {
    document.getElementById("sign-out").hidden = false;
    refresh(true);
  } else {
    login();
  }
});
