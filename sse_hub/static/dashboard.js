// The sse_hub dashboard: no libraries, no requests outside the hub.
import { EventStream } from "./sse.js";
import { Rate, Sparkline, humanBytes, parseMetrics } from "./charts.js";

const MAX_ITEMS = 500;
const SHORT_DATA_CHARS = 80;
const MAX_TYPES = 50; // types listed one by one; more are counted as "other types"
const POLL_MS = 1000;
const RATE_WINDOW_S = 10;
const RESUME_PARAMS = ["lastEventID", "lastEventId", "last_event_id"]; // as the hub reads them
const base = location.pathname.endsWith("/") ? location.pathname : location.pathname + "/";
const $ = (id) => document.getElementById(id);

let stream = null;

// ---- connection state, notes and events

function setState(state, label) {
  const badge = $("state");
  badge.dataset.state = state;
  badge.textContent = label || state;
}

function splitWords(text) {
  return text.split(/[\s,]+/).map((w) => w.trim()).filter(Boolean);
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

// Short data as it came; longer JSON objects and arrays indented.
function pretty(data) {
  if (data.length <= SHORT_DATA_CHARS) return data;
  try {
    const value = JSON.parse(data);
    if (value !== null && typeof value === "object") return JSON.stringify(value, null, 2);
  } catch (_) { /* not JSON: show as is */ }
  return data;
}

function span(className, text) {
  const element = document.createElement("span");
  element.className = className;
  element.textContent = text;
  return element;
}

function showEvent(event) {
  const li = document.createElement("li");
  li.className = "event";
  li.dataset.id = event.lastEventId;
  li.dataset.type = event.type;
  const time = document.createElement("time");
  const now = new Date();
  time.dateTime = now.toISOString();
  time.textContent = now.toLocaleTimeString();
  const meta = document.createElement("div");
  meta.className = "meta";
  meta.append(span("id", "#" + event.lastEventId), span("type", event.type), time);
  const body = document.createElement("pre");
  body.textContent = pretty(event.data);
  li.append(meta, body);
  li.hidden = !shown(event.type);
  addItem(li);
}

function onEvent(event) {
  if (event.type === "sse-hub.reset") {
    let detail = event.data;
    try {
      const info = JSON.parse(event.data);
      detail = info.reason + "; history now starts at id " + info.oldest_id;
    } catch (_) { /* keep the raw text */ }
    note("reset: " + detail);
  } else {
    count(event.type);
    showEvent(event);
  }
  if (event.lastEventId) $("last-id").value = event.lastEventId;
  showCommands();
}

// ---- the type filter, and what this page received per type

const received = new Map(); // type (or "other types") -> events received
const snapshots = []; // [{at, counts}] once a second, for the rates
let total = 0;

function typeKey(type) {
  return received.has(type) || received.size < MAX_TYPES ? type : "other types";
}

function count(type) {
  const key = typeKey(type);
  if (!received.has(key)) {
    const option = document.createElement("option");
    option.value = option.textContent = key;
    $("type-filter").append(option);
  }
  received.set(key, (received.get(key) || 0) + 1);
  total += 1;
}

function shown(type) {
  const wanted = $("type-filter").value;
  return !wanted || typeKey(type) === wanted;
}

function applyFilter() {
  for (const li of $("events").querySelectorAll("li.event")) li.hidden = !shown(li.dataset.type);
}

function showReceived() {
  const now = performance.now();
  const counts = new Map(received);
  counts.set("", total);
  snapshots.push({ at: now, counts });
  while (snapshots.length > RATE_WINDOW_S + 1) snapshots.shift();
  const oldest = snapshots[0];
  const seconds = (now - oldest.at) / 1000;
  const rows = [["", "every type"], ...[...received.keys()].map((type) => [type, type])].map(([key, label]) => {
    const row = document.createElement("tr");
    row.dataset.type = key;
    const sum = counts.get(key);
    const rate = seconds > 0 ? (sum - (oldest.counts.get(key) || 0)) / seconds : 0;
    for (const [className, text] of [["type", label], ["count", String(sum)], ["rate", rate.toFixed(1)]]) {
      const cell = document.createElement("td");
      cell.className = className;
      cell.textContent = text;
      row.append(cell);
    }
    return row;
  });
  $("received").tBodies[0].replaceChildren(...rows);
}

// ---- charts of the hub's counters

function duration(value) {
  if (value >= 1) return value.toFixed(2) + " s";
  return (value * 1000).toFixed(value < 0.01 ? 1 : 0) + " ms";
}

const charts = {
  events: new Sparkline($("chart-events"), (v) => v.toFixed(v < 10 ? 1 : 0)),
  streams: new Sparkline($("chart-streams"), String),
  lag: new Sparkline($("chart-lag"), duration),
  bytes: new Sparkline($("chart-bytes"), (v) => humanBytes(v) + "/s", humanBytes),
};
const eventRate = new Rate();
const byteRate = new Rate();
let metricsLocked = false;

function hubSource(text) {
  $("hub-source").textContent = text;
}

// /metrics has every figure; when --metrics-token guards it, /healthz still
// tells open streams and relay lag.
async function sampleHub() {
  if (document.hidden) return setTimeout(sampleHub, POLL_MS); // nobody is looking
  const now = performance.now();
  try {
    if (!metricsLocked) {
      const response = await fetch(base + "metrics", { cache: "no-store" });
      if (response.status === 401 || response.status === 403) {
        metricsLocked = true;
      } else if (!response.ok) {
        throw new Error("/metrics answered " + response.status);
      } else {
        const { values, pid } = parseMetrics(await response.text());
        const relayed = values.get("sse_hub_events_relayed_total");
        const sent = values.get("sse_hub_bytes_sent_total");
        charts.events.push(eventRate.next(relayed, pid, now), relayed);
        charts.streams.push(values.get("sse_hub_streams_open") ?? null);
        charts.lag.push(values.get("sse_hub_relay_lag_seconds") ?? null);
        charts.bytes.push(byteRate.next(sent, pid, now), sent);
        hubSource("from /metrics every second" + (pid ? " (process " + pid + ")" : ""));
        return;
      }
    }
    const response = await fetch(base + "healthz", { cache: "no-store" });
    const health = await response.json();
    charts.events.push(null);
    charts.bytes.push(null);
    charts.streams.push(health.streams ?? null);
    charts.lag.push(health.relay_lag_seconds ?? null);
    hubSource("/metrics needs the hub's --metrics-token, which this page does not have: " +
      "open streams and relay lag come from /healthz, events and bytes are not shown");
  } catch (_) {
    eventRate.next(undefined);
    byteRate.next(undefined);
    Object.values(charts).forEach((chart) => chart.push(null));
    hubSource("the hub did not answer; trying again every second");
  } finally {
    setTimeout(sampleHub, POLL_MS);
  }
}

// ---- subscribing

function streamUrl(topics, resume) {
  const params = new URLSearchParams();
  topics.forEach((t) => params.append("topic", t));
  if (resume) params.set("lastEventID", resume);
  return base + "events?" + params.toString();
}

function shellQuote(text) {
  return "'" + text.replace(/'/g, "'\\''") + "'";
}

function showCommands() {
  const topics = splitWords($("topics").value);
  const origin = location.origin;
  const pubTopic = $("pub-topic").value || topics[0] || "demo";
  $("cmd-stream").textContent = "curl -N " + shellQuote(origin + streamUrl(topics, ""));
  $("cmd-publish").textContent =
    "curl -d topic=" + encodeURIComponent(pubTopic) + " -d data=hello " + origin + base + "events";
  $("cmd-cli").textContent = "sse-hub publish " + shellQuote(pubTopic) + " hello";
  const last = (stream && stream.lastEventId) || "0";
  $("cmd-resume").textContent =
    "curl -N -H " + shellQuote("Last-Event-ID: " + last) + " " + shellQuote(origin + streamUrl(topics, ""));
}

function inSeconds(ms) {
  return Math.max(1, Math.round(ms / 1000)) + " s";
}

function disconnect() {
  if (stream) stream.close();
  stream = null;
  setState("closed", "not connected");
  $("disconnect").disabled = true;
}

function connect() {
  disconnect();
  const topics = splitWords($("topics").value);
  if (!topics.length) return;
  const resume = $("resume").value.trim();
  $("subscription").textContent = topics.join(", ");
  setState("connecting");
  if (resume) note("subscribing to " + topics.join(", ") + " after id " + resume);
  stream = new EventStream(streamUrl(topics, resume), {
    lastEventId: resume,
    on: {
      open({ resumedAfter }) {
        if (resumedAfter !== null) {
          note(resumedAfter ? "reconnected; resumed after id " + resumedAfter : "reconnected; live only");
        }
        setState("open");
      },
      event: onEvent,
      drop({ reason, delayMs }) {
        if ($("state").dataset.state !== "reconnecting") {
          note(reason + "; reconnecting in " + inSeconds(delayMs) + " with Last-Event-ID");
        }
        setState("reconnecting");
      },
      refused({ status, problem, delayMs }) {
        note("the hub refused the stream (" + status + ": " + problem + "); retrying in " + inSeconds(delayMs));
        setState("reconnecting", "refused; retrying in " + inSeconds(delayMs));
      },
      fail({ status, problem }) {
        note("stopped: the hub answered " + status + ": " + problem);
        setState("closed", "stopped (" + status + ")");
        $("disconnect").disabled = true;
      },
    },
  });
  $("disconnect").disabled = false;
  showCommands();
}

// ---- publishing and the token

function tokenFromCookie() {
  const match = document.cookie.match(/(?:^|;\s*)sse_hub_token=([^;]*)/);
  return match ? decodeURIComponent(match[1]) : "";
}

async function publish() {
  const result = $("publish-result");
  const raw = $("pub-data").value;
  let data = raw;
  try { data = JSON.parse(raw); } catch (_) { /* plain text */ }
  const body = { topic: $("pub-topic").value, data };
  const type = $("pub-event").value.trim();
  if (type) body.event = type;
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

function saveToken(event) {
  event.preventDefault();
  const value = $("token").value.trim();
  document.cookie = "sse_hub_token=" + encodeURIComponent(value) + "; path=/; SameSite=Strict" +
    (value ? "" : "; max-age=0");
  if (stream) connect();
}

// ---- start: /?topic=a&topic=b&lastEventID=41 preselects topics and resume point

const query = new URLSearchParams(location.search);
const wanted = query.getAll("topic");
if (wanted.length) {
  $("topics").value = wanted.join(" ");
  const exact = wanted.find((t) => !t.endsWith("*"));
  if (exact) $("pub-topic").value = exact;
}
const resumeParam = RESUME_PARAMS.find((name) => query.has(name));
if (resumeParam) $("resume").value = query.get(resumeParam);
$("token").value = tokenFromCookie();
$("subscribe").addEventListener("submit", (e) => { e.preventDefault(); connect(); });
$("disconnect").addEventListener("click", disconnect);
$("publish").addEventListener("submit", (e) => { e.preventDefault(); publish(); });
$("token-form").addEventListener("submit", saveToken);
$("type-filter").addEventListener("change", applyFilter);
["topics", "pub-topic"].forEach((id) => $(id).addEventListener("input", showCommands));
window.addEventListener("resize", () => Object.values(charts).forEach((chart) => chart.draw()));
connect();
showReceived();
setInterval(showReceived, POLL_MS);
sampleHub();
