// Reading a text/event-stream with fetch(): every event whatever its type, and
// resuming with Last-Event-ID after a drop. Parsing follows WHATWG HTML,
// "Server-sent events", section "Event stream interpretation", to the letter.
export const DEFAULT_RETRY_MS = 3000;
const FIRST_REFUSED_RETRY_MS = 2000;
const MAX_REFUSED_RETRY_MS = 60000;

// Bytes in, events out. Lines end at CRLF, LF or CR; a CR at the end of a chunk
// may be the first half of a CRLF, so a LF at the start of the next is skipped.
export class EventStreamParser {
  constructor({ onEvent, onRetry, lastEventId = "" }) {
    this.onEvent = onEvent;
    this.onRetry = onRetry || (() => {});
    // The last event id outlives connections: it is what a reconnection resumes from.
    this.idBuffer = lastEventId;
    this.lastEventId = lastEventId;
    this.restart();
  }

  // A new connection: a half-read line or event of the old one is dropped.
  restart() {
    // Decodes UTF-8 across chunk boundaries and drops one leading BOM, as the spec asks.
    this.decoder = new TextDecoder("utf-8");
    this.pending = "";
    this.skipLF = false;
    this.data = "";
    this.type = "";
  }

  feed(bytes) {
    this.feedText(this.decoder.decode(bytes, { stream: true }));
  }

  feedText(text) {
    let start = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (this.skipLF) {
        this.skipLF = false;
        if (c === 10) {
          start = i + 1;
          continue;
        }
      }
      if (c === 10 || c === 13) {
        this.line(this.pending + text.slice(start, i));
        this.pending = "";
        this.skipLF = c === 13; // CRLF is one line break, even split across chunks
        start = i + 1;
      }
    }
    this.pending += text.slice(start);
  }

  line(line) {
    if (line === "") return this.dispatch();
    if (line[0] === ":") return; // a comment
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value[0] === " ") value = value.slice(1);
    if (field === "event") this.type = value;
    else if (field === "data") this.data += value + "\n";
    else if (field === "id") {
      if (!value.includes("\0")) this.idBuffer = value;
    } else if (field === "retry") {
      if (/^[0-9]+$/.test(value)) this.onRetry(parseInt(value, 10));
    }
  }

  dispatch() {
    // The id sticks: an event without id: carries the last one seen.
    this.lastEventId = this.idBuffer;
    if (this.data === "") {
      this.type = "";
      return;
    }
    const event = {
      type: this.type || "message",
      data: this.data.slice(0, -1),
      lastEventId: this.lastEventId,
    };
    this.data = "";
    this.type = "";
    this.onEvent(event);
  }
}

async function problemOf(response) {
  try {
    const body = await response.json();
    return body.detail || body.title || response.statusText;
  } catch (_) {
    return response.statusText || "no detail";
  }
}

// One subscription, kept open: after a network error or a clean end it
// reconnects after the stream's retry: delay (as browsers do), sending
// Last-Event-ID; 429 and 5xx are retried later and later (Retry-After when
// given); any other refusal is shown and ends it.
export class EventStream {
  constructor(url, { lastEventId = "", on }) {
    this.url = url;
    this.on = on;
    this.retryMs = DEFAULT_RETRY_MS;
    this.parser = new EventStreamParser({
      lastEventId,
      onEvent: (event) => this.on.event(event),
      onRetry: (ms) => { this.retryMs = ms; },
    });
    this.refusals = 0;
    this.opened = false;
    this.closed = false;
    this.abort = null;
    this.timer = null;
    this.run();
  }

  get lastEventId() {
    return this.parser.lastEventId;
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.abort) this.abort.abort();
  }

  later(delayMs) {
    if (!this.closed) this.timer = setTimeout(() => this.run(), delayMs);
  }

  async run() {
    this.abort = new AbortController();
    const headers = { Accept: "text/event-stream" };
    // The first request carries its resume point in the URL; after that the header
    // does (the hub prefers it to the query).
    if (this.opened && this.lastEventId) headers["Last-Event-ID"] = this.lastEventId;
    let response;
    try {
      response = await fetch(this.url, { headers, cache: "no-store", signal: this.abort.signal });
    } catch (_) {
      if (this.closed) return;
      this.on.drop({ reason: "the hub did not answer", delayMs: this.retryMs });
      return this.later(this.retryMs);
    }
    if (response.status === 429 || response.status >= 500) {
      const after = parseInt(response.headers.get("Retry-After") || "", 10) * 1000;
      const backoff = FIRST_REFUSED_RETRY_MS * 2 ** Math.min(this.refusals, 5);
      const delayMs = Math.min(MAX_REFUSED_RETRY_MS, after >= 0 ? Math.max(after, this.retryMs) : backoff);
      this.refusals += 1;
      const problem = await problemOf(response);
      if (this.closed) return;
      this.on.refused({ status: response.status, problem, delayMs });
      return this.later(delayMs);
    }
    const type = response.headers.get("Content-Type") || "";
    if (response.status !== 200 || !type.startsWith("text/event-stream")) {
      const problem = response.status === 200 ? "not an event stream: " + type : await problemOf(response);
      if (this.closed) return;
      this.closed = true;
      return this.on.fail({ status: response.status, problem });
    }
    this.on.open({ resumedAfter: this.opened ? this.lastEventId : null });
    this.opened = true;
    this.refusals = 0;
    this.parser.restart();
    let reason = "the hub ended the stream";
    try {
      const reader = response.body.getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        this.parser.feed(value);
      }
    } catch (_) {
      reason = "connection lost";
    }
    if (this.closed) return;
    this.on.drop({ reason, delayMs: this.retryMs });
    this.later(this.retryMs);
  }
}
