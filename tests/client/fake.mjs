// Fakes for the client's unit tests: a manual clock with WebSocket, EventSource and fetch
// doubles (fakeEnv), and a small in-memory pgcast (FakeServer) for tests with real timers.

export const flush = () => new Promise((r) => setImmediate(r));
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function until(cond, ms = 5000, what = 'condition') {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

function response(status, body) {
  return { status, ok: status >= 200 && status < 300, statusText: String(status), json: async () => body };
}

// A manual clock: timers fire only when the test advances time. fetch answers by path:
// the WebSocket URL with env.wsProbeStatus (426: the sidecar is there), /events with
// env.pollPages (one body per request) or an empty page, /publish, /presence.
export function fakeEnv() {
  const env = { t: 0, timers: new Map(), nextId: 1, sockets: [], sources: [], fetches: [], wsProbeStatus: 426, pollPages: [] };
  env.setTimeout = (fn, ms) => { const id = env.nextId++; env.timers.set(id, { at: env.t + (ms || 0), fn }); return id; };
  env.clearTimeout = (id) => env.timers.delete(id);
  env.now = () => env.t;
  env.advance = async (ms) => {
    const end = env.t + ms;
    await flush();
    for (;;) {
      const due = [...env.timers].filter(([, x]) => x.at <= end).sort((a, b) => a[1].at - b[1].at || a[0] - b[0])[0];
      if (!due) break;
      env.timers.delete(due[0]);
      env.t = due[1].at;
      due[1].fn();
      await flush();
    }
    env.t = end;
    await flush();
  };
  env.location = { protocol: 'http:', host: 'example.test', href: 'http://example.test/app/page.html' };
  env.WebSocket = class {
    constructor(url) { this.url = url; this.readyState = 0; this.sent = []; env.sockets.push(this); }
    send(d) { this.sent.push(JSON.parse(d)); }
    close() { this.readyState = 3; }
    open() { this.readyState = 1; this.onopen && this.onopen(); }
    drop() { this.readyState = 3; this.onclose && this.onclose({ code: 1006 }); }
    recv(m) { this.onmessage && this.onmessage({ data: JSON.stringify(m) }); }
  };
  env.EventSource = class {
    constructor(url, init) { this.url = url; this.init = init; this.readyState = 0; env.sources.push(this); }
    close() { this.readyState = 2; }
    open() { this.readyState = 1; this.onopen && this.onopen(); }
    refuse() { this.readyState = 2; this.onerror && this.onerror({}); }
    recv(m, id) { this.onmessage && this.onmessage({ data: JSON.stringify(m), lastEventId: id || '' }); }
  };
  env.fetch = async (url, init = {}) => {
    env.fetches.push({ url, init });
    const path = new URL(url, 'http://example.test/').pathname;
    if (path.endsWith('/ws')) return response(env.wsProbeStatus, {});
    if (path.endsWith('/events')) {
      const page = env.pollPages.shift();
      if (typeof page === 'number') return response(page, { error: { code: 'x', message: 'x' } });
      return response(200, page || { events: [], cursor: '' });
    }
    if (path.endsWith('/publish')) {
      if (env.publishStatus) return response(env.publishStatus, { error: { code: 'forbidden', message: 'no' } });
      return response(201, { channel: JSON.parse(init.body).channel, seq: 99 });
    }
    if (path.endsWith('/presence')) return response(200, { channel: 'x', members: env.members || [] });
    return response(404, { error: { code: 'not_found', message: 'no' } });
  };
  return env;
}

export const ev = (channel, seq, type = 'x', payload = {}) => ({ type, channel, seq, payload, timestamp: 0 });

// An in-memory pgcast reached by WebSocket only: channels with their logs, subscribe with
// `since` (missed events, then live), publish, presence.get. Real timers.
export class FakeServer {
  constructor() {
    this.logs = new Map();
    this.sockets = new Set();
    this.opened = 0;
    const server = this;
    this.WebSocket = class {
      constructor(url) {
        this.url = url;
        this.readyState = 0;
        this.subs = new Set();
        this.id = `c${++server.opened}`;
        setTimeout(() => {
          if (this.readyState !== 0) return;
          this.readyState = 1;
          server.sockets.add(this);
          this.onopen && this.onopen();
          this.push({ type: 'connected', connectionId: this.id, tenant: 't', heartbeatIntervalMs: 30000 });
        }, 1);
      }
      push(m) { const d = JSON.stringify(m); setTimeout(() => { if (this.readyState === 1) this.onmessage && this.onmessage({ data: d }); }, 0); }
      send(text) {
        const m = JSON.parse(text);
        const log = server.log(m.channel);
        if (m.type === 'subscribe') {
          this.subs.add(m.channel);
          this.push({ type: 'subscribed', channel: m.channel, seq: log.length });
          if (m.since !== undefined) for (const e of log.slice(m.since)) this.push(e);
        } else if (m.type === 'unsubscribe') this.subs.delete(m.channel);
        else if (m.type === 'publish') {
          const e = server.publish(m.channel, m.event, m.payload);
          this.push({ type: 'published', channel: m.channel, seq: e.seq, requestId: m.requestId });
        } else if (m.type === 'presence.get') this.push({ type: 'presence.sync', channel: m.channel, payload: { members: [] } });
      }
      close() {
        if (this.readyState === 3) return;
        this.readyState = 3;
        server.sockets.delete(this);
        setTimeout(() => this.onclose && this.onclose({ code: 1000 }), 0);
      }
    };
  }
  log(ch) { if (!this.logs.has(ch)) this.logs.set(ch, []); return this.logs.get(ch); }
  publish(channel, type = 'x', payload = {}) {
    const log = this.log(channel);
    const e = { type, channel, seq: log.length + 1, payload, timestamp: Date.now() };
    log.push(e);
    for (const s of this.sockets) if (s.subs.has(channel)) s.push(e);
    return e;
  }
  get open() { return this.sockets.size; }
}
