// An SSE client on the npm `eventsource` package (the module path is argv[2]): connects
// to argv[3] and prints one JSON line per open, error and message (with the message's
// lastEventId), until killed.
const { EventSource } = await import(process.argv[2]);
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const es = new EventSource(process.argv[3]);
es.onopen = () => out({ t: "open" });
es.onerror = (e) => out({ t: "error", message: e.message || "" });
es.onmessage = (e) => {
    let m = null;
    try { m = JSON.parse(e.data); } catch { /* not JSON */ }
    out({ t: "message", type: m && m.type, seq: m && m.seq, lastEventId: e.lastEventId });
};
// the package unref()s its reconnect timer: keep the process alive while it waits
setInterval(() => {}, 1000);
