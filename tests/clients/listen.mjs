// Reads an SSE stream with a real third-party client and prints one JSON line per
// message it dispatches: {"client", "id", "event", "data"}; "open" when connected.
// Usage: node listen.mjs eventsource|fetch-event-source URL
const [client, url] = process.argv.slice(2);
const say = (line) => process.stdout.write(JSON.stringify(line) + "\n");
// eventsource unref()s its reconnect timer, so with the hub gone Node would exit
// instead of reconnecting: like a browser tab, this listener lives until killed.
setInterval(() => {}, 1 << 30);

if (client === "eventsource") {
  const { EventSource } = await import("eventsource");
  const source = new EventSource(url);
  source.onopen = () => say({ open: true });
  const show = (e) => say({ id: e.lastEventId, event: e.type, data: e.data });
  source.onmessage = show;
  for (const type of ["order.paid", "sse-hub.reset"]) source.addEventListener(type, show);
  source.onerror = (e) => say({ error: true, closed: source.readyState === EventSource.CLOSED });
} else if (client === "fetch-event-source") {
  // It is written for browsers: the little of window and document it touches.
  globalThis.window = globalThis;
  globalThis.document = { hidden: false, addEventListener() {}, removeEventListener() {} };
  const { fetchEventSource } = await import("@microsoft/fetch-event-source");
  await fetchEventSource(url, {
    openWhenHidden: true,
    onopen: async () => say({ open: true }),
    onmessage: (m) => say({ id: m.id, event: m.event || "message", data: m.data }),
    // A stream that ends (the hub stopping) resolves the promise unless onclose
    // throws: its README's way to reconnect, with the last id, after retry: ms.
    onclose: () => { throw new Error("stream closed: reconnect"); },
    onerror: () => { say({ error: true }); },
  });
} else {
  throw new Error(`unknown client ${client}`);
}
