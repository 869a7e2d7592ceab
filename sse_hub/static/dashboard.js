// The sse_hub dashboard: the browser's own EventSource, no libraries, no external requests.
"use strict";

const MAX_ITEMS = 500;
const FIRST_RETRY_MS = 2000;
const MAX_RETRY_MS = 60000;
const base = location.pathname.endsWith("/") ? location.pathname : location.pathname + "/";
const $ = (id) => document.getElementById(id);

let source = null;
let everOpened = false;
let listening = new Set();
let giveUps = 0;
let retryTimer = null;

function lastSeenId() {
  const last = $("last-id").value;
  return last && last !== "–" ? last : "";
}

function splitWords(text) {
  return text.split(/[\s,]+/).map((w) => w.trim()).filter(Boolean);
}

function setState(state, label) {
  const badge = $("state");
  badge.dataset.state = state;
  badge.textContent = label || state;
}

function tokenFromCookie() {
  const match = document.cookie.match(/(?:^|;\s*)sse_hub_token=([^;]*)/);
  return match ? decodeURIComponent(match[1]) : "";
}

function shellQuote(text) {
  return "'" + text.replace(/'/g, "'\\''") + "'";
}

function streamUrl(topics, resume) {
  const params = new URLSearchParams();
  topics.forEach((t) => params.append("topic", t));
  if (resume) params.set("lastEventID", resume);
  return base + "events?" + params.toString();
}

function showCommands() {
  const topics = splitWords($("topics").value);
  const origin = location.origin;
  const pubTopic = $("pub-topic").value || topics[0] || "demo";
  $("cmd-stream").textContent = "curl -N " + shellQuote(origin + streamUrl(topics, ""));
  $("cmd-publish").textContent =
    "curl -d topic=" + encodeURIComponent(pubTopic) + " -d data=hello " + origin + base + "events";
  $("cmd-cli").textContent = "sse-hub publish " + shellQuote(pubTopic) + " hello";
  const last = $("last-id").value;
  $("cmd-resume").textContent =
    "curl -N -H 'Last-Event-ID: " + (last && last !== "–" ? last : "0") + "' " +
    shellQuote(origin + streamUrl(topics, ""));
}

function addItem(li) {
  const list = $("events");
  list.prepend(li);
  while (list.children.length > MAX_ITEMS) list.lastElementChild.remove();
}

function note(text) {
  const li = document.createElement("li");
  li.className = "note";
  li.textContent = new Date().toLocaleTimeString() + " — " + text;
  addItem(li);
}

function pretty(data) {
  try {
    const value = JSON.parse(data);
    if (value !== null && typeof value === "object") return JSON.stringify(value, null, 2);
  } catch (_) { /* not JSON: show as is */ }
  return data;
}

function onEvent(event) {
  const li = document.createElement("li");
  li.className = "event";
  li.dataset.id = event.lastEventId;
  li.dataset.type = event.type;
  const meta = document.createElement("div");
  meta.className = "meta";
  const id = document.createElement("span");
  id.className = "id";
  id.textContent = "#" + event.lastEventId;
  const type = document.createElement("span");
  type.className = "type";
  type.textContent = event.type;
  const time = document.createElement("time");
  const now = new Date();
  time.dateTime = now.toISOString();
  time.textContent = now.toLocaleTimeString();
  meta.append(id, type, time);
  const body = document.createElement("pre");
  body.textContent = pretty(event.data);
  li.append(meta, body);
  addItem(li);
  if (event.lastEventId) $("last-id").value = event.lastEventId;
  showCommands();
}

function onReset(event) {
  let detail = event.data;
  try {
    const info = JSON.parse(event.data);
    detail = info.reason + "; history now starts at id " + info.oldest_id;
  } catch (_) { /* keep the raw text */ }
  note("reset: " + detail);
}

function listen(type) {
  if (!source || listening.has(type)) return;
  listening.add(type);
  source.addEventListener(type, onEvent);
}

function disconnect() {
  clearTimeout(retryTimer);
  retryTimer = null;
  if (source) source.close();
  source = null;
  setState("closed", "not connected");
  $("disconnect").disabled = true;
}

function connect(resumeAfter) {
  disconnect();
  const topics = splitWords($("topics").value);
  if (!topics.length) return;
  everOpened = false;
  listening = new Set();
  setState("connecting");
  const resume = typeof resumeAfter === "string" && resumeAfter ? resumeAfter : $("resume").value.trim();
  source = new EventSource(streamUrl(topics, resume));
  source.onmessage = onEvent;
  source.addEventListener("sse-hub.reset", onReset);
  splitWords($("types").value).forEach(listen);
  source.onopen = () => {
    if (everOpened) {
      const last = $("last-id").value;
      note("reconnected; the browser resumed after id " + last + " (what follows was missed)");
    }
    everOpened = true;
    giveUps = 0;
    setState("open");
  };
  source.onerror = () => {
    if (!source) return;
    if (source.readyState === EventSource.CONNECTING) {
      if ($("state").dataset.state !== "reconnecting") note("connection lost; reconnecting");
      setState("reconnecting");
    } else if (source.readyState === EventSource.CLOSED) {
      // EventSource gives up for good on an error status (429, 503, 401...):
      // try again ourselves, later and later, resuming after the last id seen.
      const delay = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** Math.min(giveUps, 6));
      giveUps += 1;
      setState("closed", "refused by the hub; retrying in " + Math.round(delay / 1000) + " s");
      note("the hub refused the stream; retrying in " + Math.round(delay / 1000) + " s");
      retryTimer = setTimeout(() => connect(lastSeenId()), delay);
    }
  };
  $("disconnect").disabled = false;
  showCommands();
}

async function publish(form) {
  const result = $("publish-result");
  const raw = $("pub-data").value;
  let data = raw;
  try { data = JSON.parse(raw); } catch (_) { /* plain text */ }
  const body = { topic: $("pub-topic").value, data: data };
  const type = $("pub-event").value.trim();
  if (type) {
    body.event = type;
    listen(type);
  }
  const headers = { "Content-Type": "application/json" };
  const token = tokenFromCookie();
  if (token) headers.Authorization = "Bearer " + token;
  result.className = "";
  result.textContent = "publishing…";
  try {
    const response = await fetch(base + "events", { method: "POST", headers, body: JSON.stringify(body) });
    const answer = await response.json();
    if (response.ok) {
      result.textContent = "published as id " + answer.id;
    } else {
      result.className = "error";
      result.textContent = response.status + ": " + (answer.detail || answer.title);
    }
  } catch (error) {
    result.className = "error";
    result.textContent = "the hub did not answer: " + error;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const query = new URLSearchParams(location.search);
  const wanted = query.getAll("topic");
  if (wanted.length) {
    $("topics").value = wanted.join(" ");
    const exact = wanted.find((t) => !t.endsWith("*"));
    if (exact) $("pub-topic").value = exact;
  }
  $("token").value = tokenFromCookie();
  $("subscribe").addEventListener("submit", (e) => { e.preventDefault(); connect(); });
  $("disconnect").addEventListener("click", disconnect);
  $("publish").addEventListener("submit", (e) => { e.preventDefault(); publish(e.target); });
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const value = $("token").value.trim();
    document.cookie = "sse_hub_token=" + encodeURIComponent(value) + "; path=/; SameSite=Strict" +
      (value ? "" : "; max-age=0");
    if (source) connect();
  });
  ["topics", "pub-topic"].forEach((id) => $(id).addEventListener("input", showCommands));
  connect();
});
