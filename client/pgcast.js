// pgcast — the browser client of pgcast. One ES module, no dependencies.
//
//   import { PgcastClient } from 'pgcast';            // or '/pgcast.js' served as a file
//   const rt = new PgcastClient({ baseUrl: '/realtime', token: 'eyJ…' });
//   rt.connect();
//   const off = rt.subscribe('project:abc', (msg) => console.log(msg));
//   rt.on('status', (status, transport) => console.log(status, transport));
//   await rt.publish('project:abc', 'project.updated', { name: 'x' });
//   const p = rt.presence('project:abc'); p.join({ color: 'red' }); p.on('change', (members) => …);
//
// Transports, best first: WebSocket ({baseUrl}/ws, or wsUrl), Server-Sent Events
// ({baseUrl}/sse), polling ({baseUrl}/events). A fallback is opened only while the
// WebSocket is not delivering; every subscription always uses the best transport that
// works at that moment. Every event carries its channel position (seq), so switching
// transports loses and repeats nothing. Tabs of one origin with the same token share one
// connection (one tab, the leader, holds it). See docs/client.md.

export const VERSION = '0.2.0';

export const DEFAULTS = Object.freeze({
  baseUrl: '/realtime', // may be absolute: https://realtime.example.com/realtime
  wsUrl: null, // default: ws(s)://{baseUrl's host}{baseUrl's path}/ws
  token: null, // a string, or a function returning one (or a Promise of one)
  credentials: 'same-origin', // fetch credentials; 'include' also sends cookies to another origin (EventSource withCredentials)
  transports: Object.freeze(['websocket', 'sse', 'poll']),
  reconnect: Object.freeze({ initialDelayMs: 1000, multiplier: 1.5, maxDelayMs: 30000, maxAttempts: 10 }),
  wsUnavailableRetryMs: 300000, // WebSocket endpoint answers 404/400 (not a network error): retry this rarely
  wsOpenTimeoutMs: 8000, // a WebSocket not open after this long: open a fallback meanwhile
  renewBeforeMs: 60000, // token a function: renew the WebSocket's token this long before its exp
  queueLimit: 100, // outgoing messages kept while disconnected
  pingIntervalMs: 30000,
  pollSilenceMs: 4000, // poll only after this long without any message
  pollWaitSeconds: 0, // >0: long-poll
  sseSilenceMs: 45000, // an SSE stream with no message this long after it was opened is held back: poll instead
  sseSilenceRetryMs: 600000, // ... and try SSE again after this long
  presenceHeartbeatMs: 15000, // HTTP presence (fallback transports)
  terminalEvents: Object.freeze([]), // event types after which polling stops
  share: true, // share one connection between tabs of one origin and token
  shareHeartbeatMs: 2000, // the leader tab's heartbeat
  shareTimeoutMs: 12000, // a leader silent this long is replaced
});

export const STATUS = Object.freeze({
  CONNECTING: 'connecting',
  CONNECTED: 'connected',
  RECONNECTING: 'reconnecting',
  DISCONNECTED: 'disconnected',
  ERROR: 'error',
});

// A 503's Retry-After (seconds) in ms, 0 without one: a site at its share of streams
// (busy) says when to come back.
export function retryAfterMs(res) {
  const v = res && res.headers && typeof res.headers.get === 'function' ? res.headers.get('Retry-After') : null;
  const s = v === null || v === undefined ? NaN : Number(v);
  return Number.isFinite(s) && s >= 0 ? Math.min(s, 3600) * 1000 : 0;
}

// Delay before reconnect attempt `attempt` (0-based): 1000, 1500, 2250, … capped.
export function backoffDelay(attempt, opts = DEFAULTS.reconnect) {
  return Math.min(opts.initialDelayMs * Math.pow(opts.multiplier, attempt), opts.maxDelayMs);
}

// "a=1,b:c=2" -> Map { a => 1, 'b:c' => 2 }. Channel names contain no ',' or '='.
export function parseCursor(text) {
  const out = new Map();
  if (!text) return out;
  for (const part of String(text).split(',')) {
    const i = part.lastIndexOf('=');
    if (i <= 0) continue;
    const seq = Number(part.slice(i + 1));
    if (Number.isInteger(seq) && seq >= 0) out.set(part.slice(0, i), seq);
  }
  return out;
}

export function formatCursor(entries) {
  return [...entries].filter(([, s]) => s !== null && s !== undefined).map(([n, s]) => `${n}=${s}`).join(',');
}

const CONTROL_TYPES = new Set([
  'connected', 'subscribed', 'unsubscribed', 'published', 'pong', 'error', 'heartbeat', 'gap', 'authed',
  'presence.join', 'presence.update', 'presence.leave', 'presence.sync',
]);

// A gap message (events no longer retained) rather than an event.
export function isGap(msg) { return !!msg && msg.type === 'gap' && typeof msg.from === 'number'; }

const isEvent = (m) => m && typeof m.seq === 'number' && typeof m.channel === 'string' && !CONTROL_TYPES.has(m.type);

function connectionError(message, code) {
  return Object.assign(new Error(message), { code });
}

class Emitter {
  constructor() { this._handlers = new Map(); }
  on(name, fn) {
    if (!this._handlers.has(name)) this._handlers.set(name, new Set());
    this._handlers.get(name).add(fn);
    return () => { const s = this._handlers.get(name); if (s) s.delete(fn); };
  }
  off(name, fn) { const s = this._handlers.get(name); if (s) s.delete(fn); }
  emit(name, ...args) {
    for (const fn of [...(this._handlers.get(name) || [])]) {
      try { fn(...args); } catch (e) { if (name !== 'error') this.emit('error', e); }
    }
  }
}

function randomId() {
  const c = globalThis.crypto;
  if (c && c.randomUUID) return c.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}-${Math.random().toString(36).slice(2)}`;
}

function fnv1a(text) {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) { h ^= text.charCodeAt(i); h = Math.imul(h, 0x01000193) >>> 0; }
  return h.toString(36);
}

function jwtClaims(token) {
  const parts = String(token || '').split('.');
  if (parts.length !== 3 || typeof atob !== 'function') return null;
  try {
    const b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4)));
  } catch (e) { return null; }
}

// What makes two tabs' tokens interchangeable: the same tenant, subject and rights (a
// renewed token keeps them). Not a verification: the server verifies every token.
function tokenShareKey(token) {
  if (!token) return 'anonymous';
  const c = jwtClaims(token); // not a JWT we can read: the token text itself
  return fnv1a(c ? JSON.stringify([c.tenant, c.sub, c.channels, c.publish]) : String(token));
}

function makeEnv(env) {
  const g = env || globalThis;
  return {
    WebSocket: g.WebSocket,
    EventSource: g.EventSource,
    BroadcastChannel: g.BroadcastChannel,
    locks: g.locks !== undefined ? g.locks : (g.navigator && g.navigator.locks) || null,
    fetch: g.fetch && g.fetch.bind(g),
    setTimeout: (g.setTimeout || setTimeout).bind(g),
    clearTimeout: (g.clearTimeout || clearTimeout).bind(g),
    now: g.now || (() => Date.now()),
    location: g.location,
    addEventListener: g.addEventListener ? g.addEventListener.bind(g) : null,
    removeEventListener: g.removeEventListener ? g.removeEventListener.bind(g) : null,
    document: g.document || null,
  };
}

class Timers {
  constructor(env) { this.env = env; this.t = {}; }
  set(name, ms, fn) {
    this.clear(name);
    this.t[name] = this.env.setTimeout(() => { delete this.t[name]; fn(); }, ms);
  }
  clear(name) {
    if (this.t[name] !== undefined) { this.env.clearTimeout(this.t[name]); delete this.t[name]; }
  }
  has(name) { return this.t[name] !== undefined; }
  clearAll() { for (const n of Object.keys(this.t)) this.clear(n); }
}

// ---------------------------------------------------------------------------------------
// Connection: one connection to a pgcast deployment for a set of channels (the union of
// what one tab, or every tab sharing it, wants). It keeps the position of each channel on
// the wire, drops what it has already passed on, and tells its owner every event, gap,
// position and presence message (onmessage) and what is delivering (onstatus).
// ---------------------------------------------------------------------------------------
export class Connection {
  constructor(opts, env) {
    this.opts = opts;
    this.env = env;
    this.id = randomId(); // presence identity over HTTP
    this.timers = new Timers(env);
    this.chans = new Map(); // name -> { pos: number|null }
    this.joined = new Map(); // channel -> presence data we hold
    this.httpJoined = new Set(); // channels joined over HTTP
    this.watched = new Set(); // channels whose member lists we follow
    this.pending = new Map(); // requestId -> { resolve, reject, sent }
    this.queue = []; // outgoing raw messages (and publishes) while the WebSocket connects
    this.status = STATUS.DISCONNECTED;
    this.transport = null;
    this.connectionId = null;
    this.onmessage = () => {};
    this.onstatus = () => {};
    this.onerror = () => {};
    this.onevent = () => {}; // named client events: websocket-gave-up, terminal, queue-full
    this._closed = true;
    this._nextId = 1;
    this._ws = null; this._wsOpen = false; this._wsAttempt = 0; this._wsStreak = 0;
    this._wsState = 'idle'; // idle | connecting | open | waiting | gaveup | off
    this._wsSlow = false; this._wsUnavailable = false; this._wsProbe = null;
    this._es = null; this._esKey = ''; this._sseOpen = false; this._sseAttempt = 0; this._sseBlocked = false;
    this._polling = false; this._pollOk = false; this._pollBusy = false; this._pollAttempt = 0;
    this._terminal = false;
    this._everConnected = false;
    this._httpOk = false;
  }

  // ---- configuration ----

  _allowed(t) { return this.opts.transports.includes(t); }
  _wsPossible() { return this._allowed('websocket') && !!this.env.WebSocket; }
  _ssePossible() { return this._allowed('sse') && !!this.env.EventSource; }
  _pollPossible() { return this._allowed('poll') && !!this.env.fetch; }

  _base() {
    const loc = this.env.location;
    try { return new URL(this.opts.baseUrl, loc && loc.href ? loc.href : 'http://localhost/'); } catch (e) { return null; }
  }
  _http(path) { return `${this.opts.baseUrl.replace(/\/$/, '')}${path}`; }
  wsUrl() {
    if (this.opts.wsUrl) return this.opts.wsUrl;
    const b = this._base();
    if (!b) return '/ws';
    const path = b.pathname.replace(/\/$/, '');
    return `${b.protocol === 'https:' ? 'wss:' : 'ws:'}//${b.host}${path}/ws`;
  }

  async _token() {
    const t = this.opts.token;
    return typeof t === 'function' ? await t() : t;
  }
  async _headers(extra = {}) {
    const token = await this._token();
    return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
  }
  _fetch(url, init = {}) {
    return this.env.fetch(url, { credentials: this.opts.credentials, cache: 'no-store', ...init });
  }

  // ---- lifecycle ----

  start() {
    if (!this._closed) return;
    this._closed = false;
    this._terminal = false;
    this._wsAttempt = 0;
    this._wsStreak = 0;
    if (this._wsPossible()) this._openWs();
    else this._wsState = 'off';
    this._reconcile();
  }

  stop() {
    this._closed = true;
    this.timers.clearAll();
    this._closeWs();
    this._stopSse();
    this._stopPoll();
    for (const ch of this.httpJoined) this._postPresence(ch, 'leave').catch(() => {});
    this.httpJoined.clear();
    this._failPending('disconnected', 'pgcast: disconnected');
    for (const q of this.queue.splice(0)) if (q.reject) q.reject(connectionError('pgcast: disconnected', 'disconnected'));
    this._wsState = 'idle';
    this._updateStatus();
  }

  // ---- what the owner wants ----

  // Receive channel from position `since` (null: from now on). A lower position than the
  // one on the wire re-reads from there (the owner drops what it has seen).
  want(name, since = null) {
    const ch = this.chans.get(name);
    if (!ch) {
      this.chans.set(name, { pos: since });
      this._channelsChanged(name);
    } else if (since !== null && since !== undefined && (ch.pos === null || since < ch.pos)) {
      ch.pos = since;
      this._channelsChanged(name);
    }
  }

  unwant(name) {
    if (!this.chans.delete(name)) return;
    if (this._wsOpen) this._wsSend({ type: 'unsubscribe', channel: name });
    this._reconcile();
  }

  position(name) { const ch = this.chans.get(name); return ch ? ch.pos : null; }

  _channelsChanged(name) {
    if (this._wsOpen) this._sendSubscribe(name);
    this._esKey = ''; // the stream's channels or positions changed: reopen it
    if (this._polling) this._pollSoon();
    this._reconcile();
  }

  // data null: leave.
  setPresence(channel, data) {
    if (data === null || data === undefined) {
      if (!this.joined.delete(channel)) return;
      if (this._wsOpen) this._wsSend({ type: 'presence.leave', channel });
      if (this.httpJoined.delete(channel)) this._postPresence(channel, 'leave').catch((e) => this.onerror(e));
      return;
    }
    const was = this.joined.has(channel);
    this.joined.set(channel, data);
    if (this._wsOpen) this._wsSend({ type: was ? 'presence.update' : 'presence.join', channel, payload: data });
    else if (this._httpFallback()) this._httpJoin(channel);
  }

  watchPresence(channel) {
    this.watched.add(channel);
    if (this._wsOpen) this._wsSend({ type: 'presence.get', channel });
    else if (this._httpFallback()) this._refreshPresence(channel);
  }

  unwatchPresence(channel) { this.watched.delete(channel); }

  // ---- status ----

  // A fallback is wanted while the WebSocket is not delivering: not allowed, failed at
  // least once, or slow to open. Not while it is connecting for the first time.
  _fallbackWanted() {
    if (this._closed || this._wsOpen) return false;
    return this._wsState !== 'connecting' || this._wsSlow;
  }

  // Presence goes over HTTP while a fallback is wanted and HTTP transports are allowed.
  _httpFallback() { return this._fallbackWanted() && (this._ssePossible() || this._pollPossible()); }

  _updateStatus() {
    let s;
    let t = null;
    if (this._closed) s = STATUS.DISCONNECTED;
    else if (this._wsOpen) { s = STATUS.CONNECTED; t = 'websocket'; }
    else if (this._sseOpen) { s = STATUS.CONNECTED; t = 'sse'; }
    else if (this._polling && this._pollOk) { s = STATUS.CONNECTED; t = 'poll'; }
    else if (this._fallbackWanted() && this.chans.size === 0 && (this._ssePossible() || this._pollPossible())) {
      // nothing to stream: HTTP requests (publish, presence) are what there is
      s = STATUS.CONNECTED;
      t = this._ssePossible() ? 'sse' : 'poll';
    } else if ((this._wsState === 'gaveup' || this._wsState === 'off') && !this._ssePossible() && !this._pollPossible()) s = STATUS.ERROR;
    else s = this._everConnected ? STATUS.RECONNECTING : STATUS.CONNECTING;
    if (s === STATUS.CONNECTED) this._everConnected = true;
    if (s === this.status && t === this.transport) return;
    this.status = s;
    this.transport = t;
    this.onstatus(s, t);
  }

  // Opens or closes fallbacks so that what delivers is the best that works.
  _reconcile() {
    if (this._closed) return;
    const want = this._fallbackWanted();
    if (!want || this.chans.size === 0) {
      this._stopSse();
      this._stopPoll();
    } else if (this._ssePossible() && !this._sseBlocked) {
      if (!this._es || this._esKey !== this._channelKey()) this._openSse();
      if (this._sseOpen) this._stopPoll();
    } else if (this._pollPossible()) {
      this._stopSse();
      if (!this._polling && !this._terminal) this._startPoll();
    } else {
      this._stopSse();
    }
    if (this._httpFallback()) {
      if (!this.timers.has('presence') && (this.joined.size || this.watched.size)) this._httpPresenceAll();
    } else {
      this.timers.clear('presence');
    }
    this._updateStatus();
  }

  // ---- WebSocket ----

  async _openWs() {
    this._wsState = 'connecting';
    this._wsSlow = false;
    this._updateStatus();
    let token;
    try { token = await this._token(); } catch (e) { this.onerror(e); token = null; }
    if (this._closed || this._wsState !== 'connecting') return;
    this._wsToken = token;
    const url = this.wsUrl() + (token ? `${this.wsUrl().includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}` : '');
    let ws;
    try { ws = new this.env.WebSocket(url); } catch (e) { this._wsClosed(null, false); return; }
    this._ws = ws;
    let opened = false;
    this.timers.set('wsSlow', this.opts.wsOpenTimeoutMs, () => {
      if (this._ws === ws && !opened) { this._wsSlow = true; this._reconcile(); }
    });
    ws.onopen = () => {
      if (this._ws !== ws) return;
      opened = true;
      this.timers.clear('wsSlow');
      this._wsOpen = true;
      this._wsState = 'open';
      this._wsAttempt = 0;
      this._wsStreak = 0;
      this._wsUnavailable = false;
      this._wsProbe = null;
      for (const name of this.chans.keys()) this._sendSubscribe(name);
      for (const [channel, data] of this.joined) this._wsSend({ type: 'presence.join', channel, payload: data });
      for (const channel of this.watched) this._wsSend({ type: 'presence.get', channel });
      for (const ch of this.httpJoined) this._postPresence(ch, 'leave').catch(() => {});
      this.httpJoined.clear();
      for (const q of this.queue.splice(0)) {
        if (q.requestId) this._sendRequest(q);
        else this._wsSend(q.msg);
      }
      this._schedulePing();
      this._scheduleRenew(this._wsToken);
      this._reconcile();
    };
    ws.onmessage = (ev) => {
      if (this._ws !== ws) return;
      let msg;
      try { msg = JSON.parse(ev.data); } catch (e) { this.onerror(new Error('pgcast: bad JSON from server')); return; }
      this._handle(msg);
    };
    ws.onerror = () => {}; // onclose follows and decides
    ws.onclose = () => { if (this._ws === ws) this._wsClosed(ws, opened); };
  }

  _closeWs() {
    const ws = this._ws;
    this._ws = null;
    this._wsOpen = false;
    this.timers.clear('ping');
    this.timers.clear('renew');
    this.timers.clear('wsSlow');
    this.timers.clear('wsRetry');
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(1000); } catch (e) { /* already closed */ }
    }
  }

  // The WebSocket could not connect or dropped: a fallback delivers meanwhile; retry with
  // back-off, rarely when the endpoint is not a WebSocket endpoint at all (404/400).
  _wsClosed(ws, opened) {
    this._ws = null;
    this._wsOpen = false;
    this.timers.clear('ping');
    this.timers.clear('renew');
    this.timers.clear('wsSlow');
    this._failPending('connection_lost', 'pgcast: the connection was lost before the server answered; the request may or may not have been done');
    if (this._closed) return;
    if (opened) { this._wsAttempt = 0; this._wsStreak = 0; } else this._wsStreak += 1;
    this._wsState = 'waiting';
    if (!opened && this._wsProbe === null) this._probeWs();
    this._scheduleWs();
    this._flushQueueHttp();
    this._reconcile();
  }

  _scheduleWs() {
    const r = this.opts.reconnect;
    if (this._wsAttempt >= r.maxAttempts) {
      this._wsState = 'gaveup';
      this.onevent('websocket-gave-up');
      return;
    }
    const unavailable = this._wsUnavailable || (this._wsProbe === 'unknown' && this._wsStreak >= 3 && this._httpOk);
    const delay = unavailable ? Math.max(this.opts.wsUnavailableRetryMs, backoffDelay(this._wsAttempt, r)) : backoffDelay(this._wsAttempt, r);
    this._wsAttempt += 1;
    this.timers.set('wsRetry', delay, () => { if (!this._closed && this._wsState === 'waiting') this._openWs(); });
  }

  // One plain GET of the WebSocket URL after a failed handshake: the sidecar answers 426
  // (it is there: a network error or a refused token); anything else that answers (404,
  // 400, a page) is not a WebSocket endpoint. A failed request tells nothing.
  async _probeWs() {
    this._wsProbe = 'pending';
    let verdict = 'unknown';
    try {
      const url = this.wsUrl().replace(/^ws/, 'http');
      const res = await this._fetch(url, { method: 'GET' });
      const s = res.status;
      if (s === 426 || s === 401 || s === 403 || s === 429 || s >= 500 || s === 0) verdict = 'present';
      else verdict = 'absent';
    } catch (e) { verdict = 'unknown'; }
    if (this._closed) return;
    this._wsProbe = verdict;
    if (verdict === 'absent' && !this._wsOpen) {
      this._wsUnavailable = true;
      if (this._wsState === 'waiting') {
        this._wsAttempt = Math.max(this._wsAttempt - 1, 0);
        this.timers.clear('wsRetry');
        this._scheduleWs();
      }
    }
  }

  // With a token function, the open WebSocket's token is renewed in-band ({type:auth})
  // renewBeforeMs before its exp; failing that the server ends the connection at exp and
  // the client reconnects with a fresh token.
  _scheduleRenew(token) {
    this.timers.clear('renew');
    const claims = typeof this.opts.token === 'function' ? jwtClaims(token) : null;
    if (!claims || typeof claims.exp !== 'number') return;
    const left = claims.exp * 1000 - this.env.now();
    this.timers.set('renew', Math.max(left - this.opts.renewBeforeMs, 0), async () => {
      let fresh;
      try { fresh = await this._token(); } catch (e) { this.onerror(e); }
      if (!this._wsOpen || this._closed) return;
      if (!fresh || fresh === this._wsToken) {
        // the same token again: ask again soon (within half the time left, at most every
        // second), until it is renewed or the connection ends
        const rest = claims.exp * 1000 - this.env.now();
        if (rest > 0) this.timers.set('renew', Math.max(250, Math.min(1000, rest / 2)), () => this._scheduleRenew(token));
        return;
      }
      const requestId = `r${this._nextId++}`;
      this.pending.set(requestId, {
        resolve: () => { this._wsToken = fresh; this._scheduleRenew(fresh); },
        reject: (e) => this.onerror(e),
        sent: true,
      });
      this._wsSend({ type: 'auth', token: fresh, requestId });
    });
  }

  _schedulePing() {
    this.timers.set('ping', this.opts.pingIntervalMs, () => {
      this._wsSend({ type: 'ping', timestamp: this.env.now() });
      this._schedulePing();
    });
  }

  _wsSend(msg) {
    if (!this._ws || !this._wsOpen || this._ws.readyState !== 1) return false;
    this._ws.send(JSON.stringify(msg));
    return true;
  }

  _sendSubscribe(name) {
    const ch = this.chans.get(name);
    if (!ch) return;
    const msg = { type: 'subscribe', channel: name };
    if (ch.pos !== null) msg.since = ch.pos;
    this._wsSend(msg);
  }

  // Sends now, or queues (at most queueLimit) while the WebSocket is down.
  send(msg) {
    if (this._wsSend(msg)) return true;
    if (this.queue.length >= this.opts.queueLimit) {
      this.onevent('queue-full', msg);
      return false;
    }
    this.queue.push({ msg });
    return true;
  }

  _failPending(code, message) {
    for (const [id, p] of this.pending) {
      if (!p.sent) continue;
      this.pending.delete(id);
      p.reject(connectionError(message, code));
    }
  }

  _sendRequest(q) {
    this.pending.set(q.requestId, { resolve: q.resolve, reject: q.reject, sent: true });
    this._wsSend(q.msg);
  }

  // Queued publishes go over HTTP once the WebSocket has failed.
  _flushQueueHttp() {
    const keep = [];
    for (const q of this.queue) {
      if (q.requestId) this._httpPublish(q.msg.channel, q.msg.event, q.msg.payload).then(q.resolve, q.reject);
      else keep.push(q);
    }
    this.queue = keep;
  }

  // Resolves with the event's seq.
  publish(channel, event, payload = {}) {
    if (this._wsOpen || (this._wsState === 'connecting' && !this._wsSlow && !this._closed)) {
      const requestId = `r${this._nextId++}`;
      const msg = { type: 'publish', channel, event, payload, requestId };
      return new Promise((resolve, reject) => {
        const q = { requestId, msg, resolve, reject };
        if (this._wsOpen) this._sendRequest(q);
        else if (this.queue.length >= this.opts.queueLimit) reject(connectionError('pgcast: outgoing queue is full', 'queue_full'));
        else this.queue.push(q);
      });
    }
    return this._httpPublish(channel, event, payload);
  }

  _httpPublish(channel, event, payload) {
    return this._httpJson('POST', '/publish', { channel, type: event, payload }).then((b) => b.seq);
  }

  async _httpJson(method, path, body) {
    const headers = await this._headers(body ? { 'Content-Type': 'application/json' } : {});
    const res = await this._fetch(this._http(path), { method, headers, body: body && JSON.stringify(body) });
    let data = {};
    try { data = await res.json(); } catch (e) { data = {}; }
    if (!res.ok) {
      throw Object.assign(new Error((data.error && data.error.message) || res.statusText || `HTTP ${res.status}`),
        { code: data.error && data.error.code, status: res.status });
    }
    return data;
  }

  // ---- SSE ----

  _channelKey() { return [...this.chans.keys()].join('\n'); }

  _query(names, extra = {}) {
    const q = new URLSearchParams();
    for (const name of names) q.append('channel', name);
    const cursor = formatCursor(names.map((n) => [n, this.chans.has(n) ? this.chans.get(n).pos : null]));
    if (cursor) q.set('since', cursor);
    for (const [k, v] of Object.entries(extra)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
    return q;
  }

  async _openSse() {
    this._stopSse();
    const key = this._channelKey();
    this._esKey = key;
    const marker = {};
    this._es = marker; // opening
    let token;
    try { token = await this._token(); } catch (e) { this.onerror(e); }
    if (this._es !== marker || this._closed) return;
    const q = this._query([...this.chans.keys()], { token });
    const es = new this.env.EventSource(`${this._http('/sse')}?${q}`, { withCredentials: this.opts.credentials === 'include' });
    this._es = es;
    this._watchSseDelivery(es);
    es.onopen = () => {
      if (this._es !== es) return;
      this.timers.clear('sseDown');
      this._sseOpen = true;
      this._sseAttempt = 0;
      this._httpOk = true;
      this._reconcile();
    };
    es.onmessage = (ev) => {
      if (this._es !== es) return;
      this.timers.clear('sseSilence'); // it delivers
      let msg;
      try { msg = JSON.parse(ev.data); } catch (e) { this.onerror(e); return; }
      if (msg.type === 'error' && msg.code === 'busy') { this._sseBusy(es, msg); return; } else this._sseBusyN = 0;
      this._handle(msg);
      if (ev.lastEventId) this._applyCursor(ev.lastEventId);
      if (msg.type === 'error' && msg.code === 'token_expired' && typeof this.opts.token === 'function') {
        // the stream ends at the token's exp: reopen it with a fresh token (the browser's
        // own reconnect would present the old one)
        this._stopSse();
        this.timers.set('sseRenew', 0, () => this._reconcile());
      }
    };
    es.onerror = () => {
      if (this._es !== es) return;
      if (this.timers.has('sseSilence')) this._watchSseDelivery(es); // failing is not silence: count anew
      if (es.readyState !== 2) {
        // the browser reconnects by itself (the stream ended): say so only if it takes long
        if (this._sseOpen && !this.timers.has('sseDown')) {
          this.timers.set('sseDown', 3000, () => { if (this._es === es && es.readyState !== 1) { this._sseOpen = false; this._reconcile(); } });
        }
        return;
      }
      // 2 = CLOSED: refused (401, 403, 404, …); poll meanwhile, try SSE again later
      es.onopen = es.onmessage = es.onerror = null;
      this._es = null;
      this._esKey = '';
      this._sseOpen = false;
      this.timers.clear('sseDown');
      this._sseBlocked = true;
      const delay = backoffDelay(this._sseAttempt++, this.opts.reconnect);
      this.timers.set('sseRetry', delay, () => { this._sseBlocked = false; this._reconcile(); });
      this._reconcile();
    };
    this._reconcile();
  }

  // A stream that was opened but delivers nothing: a web server that holds a response's
  // output until it has collected enough (mod_fcgid's FcgidOutputBufferSize, 64 KiB by
  // default on hosting accounts) lets through neither the head nor the first heartbeat
  // (servers send one at least every 30 s, sse_heartbeat_max_ms). No message within
  // sseSilenceMs: give SSE up for sseSilenceRetryMs and long-poll meanwhile (a poll's
  // answer is a whole response, which such a server does pass on).
  _watchSseDelivery(es) {
    this.timers.set('sseSilence', this.opts.sseSilenceMs, () => {
      if (this._es !== es) return;
      this._stopSse();
      this._sseBlocked = true;
      this._sseSilent = true;
      this.timers.set('sseRetry', this.opts.sseSilenceRetryMs, () => { this._sseBlocked = false; this._reconcile(); });
      this._reconcile();
    });
  }

  // The server holds as many streams as the site allows ("busy": a 200 stream with
  // retry:, this message, then its end). Not an error: close it, let polling deliver
  // meanwhile (it is refused or slowed the same way when the site is full), and open
  // the stream again after the server's hint, later with each refusal in a row.
  _sseBusy(es, msg) {
    if (this._es !== es) return;
    this._stopSse();
    this._sseBlocked = true;
    const hint = Number.isFinite(msg.retryMs) && msg.retryMs > 0 ? msg.retryMs : this.opts.reconnect.initialDelayMs;
    this._sseBusyN = (this._sseBusyN || 0) + 1;
    const delay = Math.max(hint, backoffDelay(this._sseBusyN - 1, this.opts.reconnect));
    this.timers.set('sseRetry', delay * (0.75 + Math.random() / 2), () => { this._sseBlocked = false; this._reconcile(); });
    this._reconcile();
  }

  _stopSse() {
    const es = this._es;
    this._es = null;
    this._esKey = '';
    this._sseOpen = false;
    this.timers.clear('sseDown');
    this.timers.clear('sseSilence');
    if (es && es.close) { es.onopen = es.onmessage = es.onerror = null; es.close(); }
  }

  // The cursor after an SSE message or a poll page names every channel's position.
  _applyCursor(text) {
    for (const [name, seq] of parseCursor(text)) {
      const ch = this.chans.get(name);
      if (!ch) continue;
      if (ch.pos === null) {
        ch.pos = seq;
        this.onmessage({ type: 'subscribed', channel: name, seq });
      } else if (seq > ch.pos) {
        ch.pos = seq; // events up to here were passed on (or skipped by the server's filter)
      }
    }
  }

  // ---- polling ----

  _startPoll() {
    this._polling = true;
    this._pollOk = false;
    this._pollAttempt = 0;
    this._pollSoon();
  }

  _stopPoll() {
    this._polling = false;
    this._pollOk = false;
    this.timers.clear('poll');
  }

  _pollSoon() { this.timers.set('poll', 0, () => this._pollOnce()); }

  // Every message resets the silence timer; polling happens only when it runs out.
  _resetSilence() {
    if (!this._polling || this._terminal) return;
    if (this._pollBusy) return;
    this.timers.set('poll', this.opts.pollSilenceMs, () => this._pollOnce());
  }

  // Channels polled without a position start live, like SSE and WebSocket: their current
  // position is read first (limit=0 answers only the channels' cursor).
  async _pollPositions(names) {
    const q = new URLSearchParams();
    for (const n of names) q.append('channel', n);
    q.set('limit', '0');
    const res = await this._fetch(`${this._http('/events')}?${q}`, { headers: await this._headers() });
    if (res.status !== 200) throw Object.assign(new Error(`pgcast: polling answered ${res.status}`), { status: res.status });
    const body = await res.json();
    return parseCursor(body.cursor);
  }

  async _pollOnce() {
    if (!this._polling || this._terminal || this._closed) return;
    if (this.chans.size === 0) { this._resetSilence(); return; }
    this._pollBusy = true;
    try {
      const fresh = [...this.chans].filter(([, ch]) => ch.pos === null).map(([n]) => n);
      if (fresh.length) {
        const at = await this._pollPositions(fresh);
        if (!this._polling) return;
        for (const n of fresh) {
          const ch = this.chans.get(n);
          if (ch && ch.pos === null) {
            ch.pos = at.has(n) ? at.get(n) : 0;
            this.onmessage({ type: 'subscribed', channel: n, seq: ch.pos });
          }
        }
      }
      const names = [...this.chans.keys()];
      // after SSE fell silent: long-polls, once a first plain poll answered (at once)
      const q = this._query(names, { wait: this.opts.pollWaitSeconds || (this._sseSilent && this._pollOk ? 20 : undefined) });
      const res = await this._fetch(`${this._http('/events')}?${q}`, { headers: await this._headers() });
      if (!this._polling) return;
      if (res.status === 200) {
        const body = await res.json();
        if (!this._polling) return;
        for (const e of body.events || []) this._handle(e);
        if (body.cursor) this._applyCursor(body.cursor);
        this._pollAttempt = 0;
        this._pollOk = true;
        this._httpOk = true;
      } else if (res.status !== 304) {
        this._pollRetryAfter = retryAfterMs(res);
        throw Object.assign(new Error(`pgcast: polling answered ${res.status}`), { status: res.status });
      }
    } catch (e) {
      this._pollOk = false;
      this._pollAttempt += 1;
      this.onerror(e);
    } finally {
      this._pollBusy = false;
    }
    if (!this._polling) return;
    this._updateStatus();
    const wait = this._pollOk ? this.opts.pollSilenceMs : Math.max(this.opts.pollSilenceMs, backoffDelay(this._pollAttempt - 1, this.opts.reconnect), this._pollRetryAfter || 0);
    this._pollRetryAfter = 0;
    if (!this._terminal) this.timers.set('poll', wait, () => this._pollOnce());
  }

  // ---- HTTP presence (while a fallback delivers) ----

  _postPresence(channel, action, data) {
    const body = { channel, action, connectionId: this.id };
    if (action !== 'leave') body.data = data || {};
    return this._httpJson('POST', '/presence', body);
  }

  _httpJoin(channel) {
    const data = this.joined.get(channel);
    this._postPresence(channel, 'join', data).then(() => {
      if (!this.joined.has(channel) || this._wsOpen) return;
      this.httpJoined.add(channel);
      this._refreshPresence(channel);
    }).catch((e) => this.onerror(e));
  }

  async _refreshPresence(channel) {
    try {
      const res = await this._fetch(`${this._http('/presence')}?channel=${encodeURIComponent(channel)}`, { headers: await this._headers() });
      if (res.ok && !this._wsOpen) this.onmessage({ type: 'presence.sync', channel, payload: { members: (await res.json()).members || [] } });
    } catch (e) { this.onerror(e); }
  }

  _httpPresenceAll() {
    for (const channel of this.joined.keys()) {
      if (this.httpJoined.has(channel)) {
        this._postPresence(channel, 'heartbeat', this.joined.get(channel)).catch((e) => {
          if (e.status === 404) this._httpJoin(channel); else this.onerror(e);
        });
      } else this._httpJoin(channel);
    }
    for (const channel of this.watched) if (!this.joined.has(channel)) this._refreshPresence(channel);
    this.timers.set('presence', this.opts.presenceHeartbeatMs, () => { if (this._httpFallback()) this._httpPresenceAll(); });
  }

  // ---- incoming ----

  _handle(msg) {
    if (!msg || typeof msg !== 'object') return;
    this._resetSilence();
    switch (msg.type) {
      case 'connected': this.connectionId = msg.connectionId; this.onmessage(msg); return;
      case 'pong': case 'heartbeat': case 'unsubscribed': return;
      case 'subscribed': {
        const ch = this.chans.get(msg.channel);
        if (ch && ch.pos === null && typeof msg.seq === 'number') {
          ch.pos = msg.seq;
          this.onmessage(msg);
        }
        return;
      }
      case 'published': case 'authed': case 'error': {
        const p = msg.requestId !== undefined && this.pending.get(msg.requestId);
        if (p) {
          this.pending.delete(msg.requestId);
          if (msg.type === 'published') p.resolve(msg.seq);
          else if (msg.type === 'authed') p.resolve(msg);
          else p.reject(connectionError(msg.message, msg.code));
        } else if (msg.type === 'error') {
          this.onerror(connectionError(msg.message, msg.code));
        }
        return;
      }
      case 'gap': {
        const ch = this.chans.get(msg.channel);
        if (!ch) return;
        if (ch.pos === null || msg.to > ch.pos) ch.pos = msg.to;
        this.onmessage(msg);
        return;
      }
      case 'presence.sync': case 'presence.join': case 'presence.update': case 'presence.leave':
        this.onmessage(msg);
        return;
      default: break;
    }
    if (!isEvent(msg)) return;
    const ch = this.chans.get(msg.channel);
    if (!ch) return;
    if (ch.pos !== null && msg.seq <= ch.pos) return; // passed on already (transport switch, resume)
    ch.pos = msg.seq;
    this.onmessage(msg);
    if (this.opts.terminalEvents.includes(msg.type)) {
      this._terminal = true;
      this.timers.clear('poll');
    }
  }
}

// ---------------------------------------------------------------------------------------
// Sharing one connection between tabs. Every tab of one origin, deployment and token
// joins a BroadcastChannel; one of them (the leader: holder of a Web Lock, or elected by
// heartbeats where Web Locks are missing) runs the Connection for the union of every
// tab's channels and presence, and broadcasts what it receives. Every message carries
// its position, so each tab drops what it has seen; a tab that sees a hole asks the
// leader to read again from its own position. A new leader starts every channel from
// the lowest position any tab has.
// ---------------------------------------------------------------------------------------
class TabShare {
  constructor(client, key) {
    this.client = client;
    this.env = client.env;
    this.opts = client.opts;
    this.id = randomId();
    this.key = key;
    this.bc = new this.env.BroadcastChannel(`pgcast:${key}`);
    this.timers = new Timers(this.env);
    this.role = 'follower';
    this.epoch = 0; // highest leader epoch seen
    this.leaderId = null;
    this.lastLeaderAt = 0;
    this.conn = null; // leader only
    this.tabs = new Map(); // leader only: tabId -> { subs: Set, pres: Map ch -> {data, n}, watch: Set, seen }
    this.pubs = new Map(); // follower: id -> { resolve, reject, msg, sent }
    this._n = 0;
    this._closed = false;
    this.bc.onmessage = (ev) => this._recv(ev.data);
    this._onHide = () => this.close(true);
    this._onFreeze = () => {
      this._frozen = true;
      if (this.role === 'leader') this._resign();
      const w = this._lockWaiting;
      this._lockWaiting = null;
      if (w && w.ac) w.ac.abort();
    };
    this._onResume = () => { this._frozen = false; if (!this._closed && this.role !== 'leader') { this._post({ k: 'hello' }); this._elect(); } };
    // pagehide is fired at the window, freeze and resume (page lifecycle) at the document
    this._doc = this.env.document && this.env.document.addEventListener ? this.env.document : null;
    if (this.env.addEventListener) this.env.addEventListener('pagehide', this._onHide);
    if (this._doc) {
      this._doc.addEventListener('freeze', this._onFreeze);
      this._doc.addEventListener('resume', this._onResume);
    }
    this._post({ k: 'hello' });
    this._elect();
    this._heartbeat();
  }

  _post(m) { if (!this._closed) { try { this.bc.postMessage({ ...m, from: this.id }); } catch (e) { this.client.emit('error', e); } } }

  // ---- election ----

  _elect() {
    if (this._closed || this._frozen) return;
    const locks = this.env.locks;
    if (locks && locks.request) {
      if (this._lockWaiting || this._lockHeld) return;
      const ac = typeof AbortController !== 'undefined' ? new AbortController() : null;
      this._lockRequest(ac ? { signal: ac.signal } : {}, ac);
    } else {
      // no Web Locks: heartbeats; a tab that hears no leader claims, the lowest id wins
      this.timers.set('elect', Math.min(this.opts.shareHeartbeatMs * 1.5, 500), () => this._claim());
    }
  }

  // One request for the leader lock: queued behind the holder (or stealing it from a
  // holder that stopped answering). When it ends — released, or stolen — the tab is a
  // follower again and queues anew.
  _lockRequest(opts, ac) {
    const mine = { ac };
    this._lockWaiting = mine;
    this.env.locks.request(`pgcast-leader:${this.key}`, opts, () => this._holdLock(mine))
      .catch(() => {})
      .finally(() => {
        if (this._lockWaiting === mine) this._lockWaiting = null;
        if (this._lockHeld !== mine) return;
        this._lockHeld = null;
        this._releaseLock = null;
        if (this.role === 'leader') this._stepDown();
        this._elect();
      });
  }

  _holdLock(mine) {
    if (this._closed || this._frozen) return undefined;
    if (this._lockWaiting === mine) this._lockWaiting = null;
    this._lockHeld = mine;
    return new Promise((resolve) => {
      this._releaseLock = resolve;
      this._becomeLeader();
    });
  }

  _steal() {
    const locks = this.env.locks;
    if (locks && locks.request) {
      if (this._lockHeld) return;
      const w = this._lockWaiting;
      this._lockWaiting = null;
      if (w && w.ac) w.ac.abort();
      this._lockRequest({ steal: true }, null);
    } else this._claim();
  }

  _claim() {
    if (this._closed || this.role === 'leader') return;
    if (this.leaderId && this.env.now() - this.lastLeaderAt < this.opts.shareTimeoutMs) return;
    this._claiming = true;
    this._post({ k: 'claim' });
    this.timers.set('claim', Math.min(Math.max(100, this.opts.shareHeartbeatMs / 4), 500), () => {
      if (this._claiming && !this._closed) { this._claiming = false; this._becomeLeader(); }
    });
  }

  _becomeLeader() {
    if (this._closed) { if (this._releaseLock) this._releaseLock(); return; }
    this.role = 'leader';
    this.epoch += 1;
    this.leaderId = this.id;
    this.lastLeaderAt = this.env.now();
    this.tabs = new Map();
    this.client._role('leader');
    const conn = new Connection(this.opts, this.env);
    this.conn = conn;
    this._presApplied = new Map();
    this.connectionId = null;
    conn.onstatus = (s, t) => { if (this.conn === conn) { this.client._setStatus(s, t); this._post({ k: 'status', e: this.epoch, s, t }); } };
    conn.onmessage = (m) => { if (this.conn === conn) { if (m.type === 'connected') this.connectionId = m.connectionId; this._fromServer(m); } };
    conn.onerror = (e) => this.client.emit('error', e);
    conn.onevent = (name, arg) => this.client.emit(name, arg);
    this._applyTab(this.id, this.client._state(), true);
    conn.start();
    this._announce();
    this._flushPubs();
  }

  _announce(extra = {}) {
    const c = this.conn;
    this._post({ k: 'leader', e: this.epoch, s: c ? c.status : null, t: c ? c.transport : null, cid: this.connectionId || null, ...extra });
  }

  _stepDown() {
    if (this.role !== 'leader') return;
    this.role = 'follower';
    const conn = this.conn;
    this.conn = null;
    if (conn) conn.stop();
    this.tabs = new Map();
    this.client._role('follower');
    this.client._setStatus(STATUS.RECONNECTING, null);
  }

  _resign() {
    if (this.role !== 'leader') return;
    this._post({ k: 'resign', e: this.epoch });
    this._stepDown();
    this.leaderId = null;
    if (this._releaseLock) { const r = this._releaseLock; this._releaseLock = null; r(); }
  }

  _heartbeat() {
    this.timers.set('hb', this.opts.shareHeartbeatMs, () => {
      if (this._closed) return;
      if (this.role === 'leader') {
        this._announce();
        // a tab silent for long is gone (closed without pagehide)
        const limit = Math.max(this.opts.shareTimeoutMs * 8, 90000);
        for (const [id, t] of this.tabs) if (id !== this.id && this.env.now() - t.seen > limit) { this.tabs.delete(id); this._union(); }
      } else {
        this._post({ k: 'alive' });
        if (this.leaderId && this.env.now() - this.lastLeaderAt > this.opts.shareTimeoutMs) {
          this.leaderId = null;
          this._steal();
        } else if (!this.leaderId && !(this.env.locks && this.env.locks.request)) {
          if (!this.timers.has('elect') && !this.timers.has('claim')) this._claim();
        }
      }
      this._heartbeat();
    });
  }

  // ---- messages between tabs ----

  _recv(m) {
    if (!m || m.from === this.id || this._closed) return;
    const fromLeader = m.k === 'leader' || m.k === 'msg' || m.k === 'status' || m.k === 'pubr' || m.k === 'pos' || m.k === 'resign' || m.k === 'who';
    if (fromLeader) {
      if (m.e < this.epoch) return; // an old leader
      if (m.k === 'resign') {
        if (m.from === this.leaderId) {
          this.leaderId = null;
          this._leaderLost();
          this.client._setStatus(STATUS.RECONNECTING, null);
          if (this.env.locks && this.env.locks.request) this._elect(); else this._claim();
        }
        return;
      }
      if (this.role === 'leader') {
        if (m.e > this.epoch || (m.e === this.epoch && m.from < this.id)) {
          this._stepDown();
          if (this._releaseLock) { const r = this._releaseLock; this._releaseLock = null; r(); }
        } else { if (m.k === 'leader') this._announce(); return; }
      }
      this._claiming = false;
      this.timers.clear('claim');
      this.timers.clear('elect');
      const isNew = m.from !== this.leaderId || m.e > this.epoch;
      this.epoch = m.e;
      this.leaderId = m.from;
      this.lastLeaderAt = this.env.now();
      if (isNew) {
        this._leaderLost();
        this._sendState();
        if (m.k === 'leader' && m.cid) this.client._connected(m.cid);
      }
      switch (m.k) {
        case 'leader': if (m.s) this.client._setStatus(m.s, m.t); break;
        case 'who': if (m.to === this.id) this._sendState(); break;
        case 'msg': this.client._deliver(m.m); break;
        case 'status': this.client._setStatus(m.s, m.t); break;
        case 'pos': if (m.to === this.id) this.client._deliver({ type: 'subscribed', channel: m.ch, seq: m.seq }); break;
        case 'pubr': {
          if (m.to !== this.id) break;
          const p = this.pubs.get(m.id);
          if (!p) break;
          this.pubs.delete(m.id);
          if (m.err) p.reject(connectionError(m.err.message, m.err.code)); else p.resolve(m.seq);
          break;
        }
        default: break;
      }
      return;
    }
    if (m.k === 'claim') {
      if (this.role === 'leader') this._announce();
      else if (this._claiming && m.from < this.id) { this._claiming = false; this.timers.clear('claim'); this.timers.set('elect', this.opts.shareHeartbeatMs * 1.5, () => this._claim()); }
      return;
    }
    if (this.role !== 'leader') return;
    // follower -> leader
    const tab = this._tab(m.from);
    tab.seen = this.env.now();
    switch (m.k) {
      case 'hello': this._announce(); break;
      case 'alive': if (tab.fresh) this._post({ k: 'who', e: this.epoch, to: m.from }); break;
      case 'state': this._applyTab(m.from, m.state, true); break;
      case 'sub': this._sub(m.from, m.ch, m.since); break;
      case 'unsub': tab.subs.delete(m.ch); this._union(); break;
      case 'pres': this._pres(m.from, m.ch, m.data); break;
      case 'watch': tab.watch.add(m.ch); this.conn.watchPresence(m.ch); break;
      case 'raw': this.conn.send(m.msg); break;
      case 'pub':
        this.conn.publish(m.ch, m.ev, m.payload).then(
          (seq) => this._post({ k: 'pubr', e: this.epoch, to: m.from, id: m.id, seq }),
          (err) => this._post({ k: 'pubr', e: this.epoch, to: m.from, id: m.id, err: { message: err.message, code: err.code } }));
        break;
      case 'bye': this.tabs.delete(m.from); this._union(); break;
      default: break;
    }
  }

  _tab(id) {
    let t = this.tabs.get(id);
    if (!t) { t = { subs: new Set(), pres: new Map(), watch: new Set(), seen: this.env.now(), fresh: true }; this.tabs.set(id, t); }
    return t;
  }

  // A tab's whole state (a new leader, or a tab the leader did not know): every channel
  // from the tab's own position.
  _applyTab(id, state, replace) {
    const t = this._tab(id);
    t.fresh = false;
    if (replace) { t.subs = new Set(); t.pres = new Map(); t.watch = new Set(); }
    for (const [ch, seq] of Object.entries(state.subs || {})) { t.subs.add(ch); this.conn.want(ch, seq); }
    for (const [ch, data] of Object.entries(state.pres || {})) t.pres.set(ch, { data, n: ++this._n });
    for (const ch of state.watch || []) t.watch.add(ch);
    this._union();
    for (const ch of state.watch || []) this.conn.watchPresence(ch);
    for (const ch of Object.keys(state.subs || {})) {
      const pos = this.conn.position(ch);
      if (pos !== null && state.subs[ch] === null) this._toTab(id, ch, pos);
    }
  }

  _toTab(id, ch, seq) {
    if (id === this.id) this.client._deliver({ type: 'subscribed', channel: ch, seq });
    else this._post({ k: 'pos', e: this.epoch, to: id, ch, seq });
  }

  _sub(id, ch, since) {
    this._tab(id).subs.add(ch);
    this.conn.want(ch, since);
    const pos = this.conn.position(ch);
    if (since === null && pos !== null) this._toTab(id, ch, pos);
  }

  _pres(id, ch, data) {
    const t = this._tab(id);
    if (data === null || data === undefined) t.pres.delete(ch); else t.pres.set(ch, { data, n: ++this._n });
    this._union();
  }

  // The connection wants the union of every tab's channels; presence in a channel is
  // held while any tab holds it, with the data most recently set.
  _union() {
    if (!this.conn) return;
    const subs = new Set();
    const pres = new Map();
    for (const t of this.tabs.values()) {
      for (const ch of t.subs) subs.add(ch);
      for (const [ch, p] of t.pres) if (!pres.has(ch) || pres.get(ch).n < p.n) pres.set(ch, p);
    }
    for (const ch of subs) this.conn.want(ch, null);
    for (const ch of [...this.conn.chans.keys()]) if (!subs.has(ch)) this.conn.unwant(ch);
    for (const ch of [...this.conn.joined.keys()]) if (!pres.has(ch)) { this.conn.setPresence(ch, null); this._presApplied.delete(ch); }
    for (const [ch, p] of pres) if (this._presApplied.get(ch) !== p.n) { this._presApplied.set(ch, p.n); this.conn.setPresence(ch, p.data); }
  }

  _fromServer(m) {
    this.client._deliver(m);
    this._post({ k: 'msg', e: this.epoch, m });
  }

  _sendState() { this._post({ k: 'state', state: this.client._state() }); this._flushPubs(); }

  _flushPubs() {
    for (const [id, p] of this.pubs) {
      if (p.sent) continue;
      p.sent = true;
      if (this.role === 'leader') { this.pubs.delete(id); this.conn.publish(p.msg.ch, p.msg.ev, p.msg.payload).then(p.resolve, p.reject); }
      else this._post({ k: 'pub', id, ...p.msg });
    }
  }

  // ---- what the tab does ----

  want(ch, since) { if (this.role === 'leader') this._sub(this.id, ch, since); else if (this.leaderId) this._post({ k: 'sub', ch, since }); }
  unwant(ch) {
    if (this.role === 'leader') { this._tab(this.id).subs.delete(ch); this._union(); } else if (this.leaderId) this._post({ k: 'unsub', ch });
  }
  setPresence(ch, data) { if (this.role === 'leader') this._pres(this.id, ch, data); else if (this.leaderId) this._post({ k: 'pres', ch, data }); }
  watchPresence(ch) {
    if (this.role === 'leader') { this._tab(this.id).watch.add(ch); this.conn.watchPresence(ch); } else if (this.leaderId) this._post({ k: 'watch', ch });
  }
  send(msg) {
    if (this.role === 'leader') return this.conn.send(msg);
    if (this.leaderId) { this._post({ k: 'raw', msg }); return true; }
    return false;
  }
  publish(ch, ev, payload) {
    if (this.role === 'leader') return this.conn.publish(ch, ev, payload);
    return new Promise((resolve, reject) => {
      const id = randomId();
      const msg = { ch, ev, payload };
      this.pubs.set(id, { resolve, reject, msg, sent: !!this.leaderId });
      if (this.leaderId) this._post({ k: 'pub', id, ...msg });
    });
  }
  // A leader change while a publish is out: it may or may not have been done.
  _leaderLost() {
    for (const [id, p] of this.pubs) if (p.sent) { this.pubs.delete(id); p.reject(connectionError('pgcast: the tab holding the connection went away before the server answered; the publish may or may not have been done', 'connection_lost')); }
  }

  close(hidden = false) {
    if (this._closed) return;
    if (this.role === 'leader') this._resign();
    else this._post({ k: 'bye' });
    this._closed = true;
    this.timers.clearAll();
    if (this._lockWaiting && this._lockWaiting.abort) this._lockWaiting.abort();
    if (this._releaseLock) this._releaseLock();
    if (this.env.removeEventListener) this.env.removeEventListener('pagehide', this._onHide);
    if (this._doc) {
      this._doc.removeEventListener('freeze', this._onFreeze);
      this._doc.removeEventListener('resume', this._onResume);
    }
    try { this.bc.close(); } catch (e) { /* closed */ }
    for (const p of this.pubs.values()) p.reject(connectionError('pgcast: disconnected', 'disconnected'));
    this.pubs.clear();
    if (hidden) this.client._hidden();
  }
}

// Presence of one channel: the member list kept current, join/update/leave.
export class Presence extends Emitter {
  constructor(client, channel) {
    super();
    this.client = client;
    this.channel = channel;
    this.members = new Map(); // connectionId -> member
    this.joined = null; // our data while joined
  }
  list() { return [...this.members.values()]; }
  join(data = {}) { this.joined = data; this.client._presenceSet(this.channel, data); }
  update(data = {}) { this.joined = data; this.client._presenceSet(this.channel, data); }
  leave() { this.joined = null; this.client._presenceSet(this.channel, null); }
  _set(members) {
    this.members = new Map(members.map((m) => [m.connectionId, m]));
    this.emit('change', this.list());
  }
  _apply(type, member) {
    if (!member || !member.connectionId) return;
    if (type === 'presence.leave') this.members.delete(member.connectionId);
    else this.members.set(member.connectionId, { ...(this.members.get(member.connectionId) || {}), ...member });
    this.emit('change', this.list());
  }
}

// ---------------------------------------------------------------------------------------
// The client a page uses: its own channels (handlers and positions) and presence, over a
// Connection of its own, or over the one a leader tab holds.
// ---------------------------------------------------------------------------------------
export class PgcastClient extends Emitter {
  constructor(options = {}, env = globalThis) {
    super();
    this.opts = {
      ...DEFAULTS,
      ...options,
      reconnect: { ...DEFAULTS.reconnect, ...(options.reconnect || {}) },
    };
    this.env = makeEnv(env);
    this.status = STATUS.DISCONNECTED;
    this.transport = null; // 'websocket' | 'sse' | 'poll' | null
    this.role = null; // 'solo' | 'leader' | 'follower' while connected
    this.channels = new Map(); // name -> { refs, handlers: Set, seq: number|null }
    this.presences = new Map();
    this.connectionId = null;
    this._link = null; // a Connection, or a TabShare
    this._closed = true;
    this._starting = null;
  }

  get queue() { return this._link && this._link.queue ? this._link.queue : []; }
  get wsUrl() { return new Connection(this.opts, this.env).wsUrl(); }

  // ---- connection ----

  connect() {
    if (!this._closed) return this;
    this._closed = false;
    // tabs share in browsers (a document, or Web Locks); elsewhere (Node) each client is alone
    const shareable = this.opts.share && this.env.BroadcastChannel && (this.env.locks || this.env.document);
    if (!shareable) { this._startSolo(); return this; }
    const t = this.opts.token;
    if (typeof t === 'function') {
      const run = this._starting = Promise.resolve().then(() => t()).then((tok) => {
        if (this._starting === run && !this._closed) this._startShared(tok);
      }, (e) => { this.emit('error', e); if (this._starting === run && !this._closed) this._startSolo(); });
    } else this._startShared(t);
    return this;
  }

  disconnect() {
    this._closed = true;
    this._starting = null;
    const link = this._link;
    this._link = null;
    if (link instanceof TabShare) link.close();
    else if (link) link.stop();
    this.role = null;
    this._setStatus(STATUS.DISCONNECTED, null);
  }

  _startSolo() {
    const conn = new Connection(this.opts, this.env);
    conn.onmessage = (m) => { if (this._link === conn) this._deliver(m); };
    conn.onstatus = (s, t) => { if (this._link === conn) this._setStatus(s, t); };
    conn.onerror = (e) => this.emit('error', e);
    conn.onevent = (name, arg) => this.emit(name, arg);
    this._link = conn;
    this.role = 'solo';
    for (const [name, ch] of this.channels) conn.want(name, ch.seq);
    for (const p of this.presences.values()) {
      if (p.joined) conn.setPresence(p.channel, p.joined);
      conn.watchPresence(p.channel);
    }
    conn.start();
  }

  _startShared(token) {
    const base = new Connection(this.opts, this.env);
    const b = base._base();
    const key = fnv1a([b ? b.href : this.opts.baseUrl, base.wsUrl(), this.opts.transports.join(','), tokenShareKey(token)].join('\n'));
    this._setStatus(STATUS.CONNECTING, null);
    this.role = 'follower';
    this._link = new TabShare(this, key);
  }

  // The page was hidden for good (pagehide): come back as a follower if it is shown again.
  _hidden() {
    this._link = null;
    if (this.env.addEventListener && !this._closed) {
      const again = (ev) => {
        this.env.removeEventListener('pageshow', again);
        if (!this._closed && !this._link && ev && ev.persisted !== false) { this._closed = true; this.connect(); }
      };
      this.env.addEventListener('pageshow', again);
    }
  }

  _connected(connectionId) {
    if (this.connectionId === connectionId) return;
    this.connectionId = connectionId;
    this.emit('connected', { type: 'connected', connectionId });
  }

  _role(r) {
    if (this.role === r) return;
    if (r === 'follower' && this._link instanceof TabShare) this._link._leaderLost();
    this.role = r;
    this.emit('role', r);
  }

  _setStatus(s, t = null) {
    if (this.status === s && this.transport === t) return;
    this.status = s;
    this.transport = t;
    this.emit('status', s, t);
  }

  // What a new leader needs from this tab: channels with positions, presence.
  _state() {
    const subs = {};
    for (const [name, ch] of this.channels) subs[name] = ch.seq;
    const pres = {};
    const watch = [];
    for (const p of this.presences.values()) {
      if (p.joined) pres[p.channel] = p.joined;
      watch.push(p.channel);
    }
    return { subs, pres, watch };
  }

  // ---- incoming (from the connection, ours or the leader's) ----

  _deliver(msg) {
    switch (msg.type) {
      case 'connected': this.connectionId = msg.connectionId; this.emit('connected', msg); return;
      case 'subscribed': {
        const ch = this.channels.get(msg.channel);
        if (ch && ch.seq === null) ch.seq = msg.seq;
        return;
      }
      case 'gap': {
        const ch = this.channels.get(msg.channel);
        if (!ch) return;
        if (ch.seq !== null && msg.to <= ch.seq) return;
        if (ch.seq !== null && msg.from > ch.seq + 1 && this.role !== 'solo') { this._repair(msg.channel, ch); return; }
        ch.seq = msg.to;
        this._dispatch(ch, msg);
        return;
      }
      case 'presence.sync': {
        const p = this.presences.get(msg.channel);
        if (p) p._set((msg.payload && msg.payload.members) || []);
        return;
      }
      case 'presence.join': case 'presence.update': case 'presence.leave': {
        const p = this.presences.get(msg.channel);
        if (p) p._apply(msg.type, msg.payload);
        return;
      }
      default: break;
    }
    if (!isEvent(msg)) return;
    const ch = this.channels.get(msg.channel);
    if (!ch) return;
    if (ch.seq !== null && msg.seq <= ch.seq) return; // seen (transport switch, resume, another tab's replay)
    if (ch.seq !== null && msg.seq > ch.seq + 1 && this.role !== 'solo') { this._repair(msg.channel, ch); return; }
    ch.seq = msg.seq;
    this._dispatch(ch, msg);
    if (this.opts.terminalEvents.includes(msg.type)) this.emit('terminal', msg);
  }

  // A hole in a shared stream (a leader hand-over): ask for everything after our position.
  _repair(name, ch) {
    if (this._link) this._link.want(name, ch.seq);
  }

  _dispatch(ch, msg) {
    for (const h of [...ch.handlers]) {
      if (h.events && msg.type !== 'gap' && !h.events.includes(msg.type)) continue;
      try { h.fn(msg); } catch (e) { this.emit('error', e); }
    }
  }

  // ---- channels ----

  // Reference counted: the first subscriber of a channel subscribes, the last one to
  // leave unsubscribes. `since` resumes from a position (e.g. realtime.cursor embedded in
  // the page); without it the channel starts live on every transport. Returns the
  // function that unsubscribes.
  subscribe(channel, fn, { events = null, since = null } = {}) {
    let ch = this.channels.get(channel);
    const handler = { fn, events };
    if (!ch) {
      ch = { refs: 0, handlers: new Set(), seq: since };
      this.channels.set(channel, ch);
    } else if (since !== null && (ch.seq === null || since < ch.seq)) {
      ch.seq = since;
    }
    ch.refs += 1;
    ch.handlers.add(handler);
    if (this._link && (ch.refs === 1 || since !== null)) this._link.want(channel, ch.seq);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      ch.handlers.delete(handler);
      ch.refs -= 1;
      if (ch.refs === 0 && this.channels.get(channel) === ch) {
        this.channels.delete(channel);
        if (this._link) this._link.unwant(channel);
      }
    };
  }

  // Resolves with the event's seq.
  publish(channel, event, payload = {}) {
    if (!this._link) {
      // not connected: one HTTP request
      return new Connection(this.opts, this.env)._httpPublish(channel, event, payload);
    }
    return this._link.publish(channel, event, payload);
  }

  // Sends a raw protocol message over the WebSocket now, or queues it (at most queueLimit)
  // until the WebSocket is open.
  send(msg) {
    if (!this._link) return false;
    return this._link.send(msg);
  }

  // ---- presence ----

  presence(channel) {
    let p = this.presences.get(channel);
    if (!p) {
      p = new Presence(this, channel);
      this.presences.set(channel, p);
      if (this._link) this._link.watchPresence(channel);
    }
    return p;
  }

  _presenceSet(channel, data) {
    if (this._link) this._link.setPresence(channel, data);
  }
}

// ---------------------------------------------------------------------------------------
// Optimistic updates: apply a change at once under a client id; when the server's event
// carrying that id arrives, the change is confirmed (the event replaces it); on an error
// or after timeoutMs without the event, it is rolled back.
//
//   const todos = optimistic(rt, 'project:abc', { initial: [], reduce: (list, ev) => … });
//   todos.on('change', render);
//   await todos.mutate('todo.added', { title: 'x' });   // publish with payload.clientId
// ---------------------------------------------------------------------------------------
export class Optimistic extends Emitter {
  constructor(client, channel, { reduce, initial = null, timeoutMs = 15000, idKey = 'clientId', since = null, send = null, events = null } = {}) {
    super();
    if (typeof reduce !== 'function') throw new TypeError('optimistic: reduce(state, event) is required');
    this.client = client;
    this.channel = channel;
    this.reduce = reduce;
    this.confirmed = initial;
    this.timeoutMs = timeoutMs;
    this.idKey = idKey;
    this.sendFn = send;
    this.pending = new Map(); // clientId -> { event, resolve, reject, timer }
    this._setTimeout = client && client.env ? client.env.setTimeout : setTimeout;
    this._clearTimeout = client && client.env ? client.env.clearTimeout : clearTimeout;
    this.state = initial;
    this._off = client ? client.subscribe(channel, (ev) => this._event(ev), { since, events }) : () => {};
  }

  _recompute() {
    let s = this.confirmed;
    for (const p of this.pending.values()) s = this.reduce(s, p.event);
    this.state = s;
    this.emit('change', s);
  }

  // Applies a server event to the confirmed state; confirms the pending change it carries.
  _event(ev) {
    if (ev.type === 'gap') { this.emit('gap', ev); return; }
    this.confirmed = this.reduce(this.confirmed, ev);
    const id = ev.payload && ev.payload[this.idKey];
    const p = id !== undefined && this.pending.get(id);
    if (p) {
      this.pending.delete(id);
      this._clearTimeout(p.timer);
      p.resolve(ev);
    }
    this._recompute();
  }

  // Applies {type, payload + clientId} now; sends it (publish on the channel, or the
  // `send` option: e.g. a POST to the application, which publishes the event with the
  // same clientId). Resolves with the server's event; rejects (and rolls back) on error
  // or timeout.
  mutate(type, payload = {}, { send = this.sendFn, timeoutMs = this.timeoutMs, clientId = randomId() } = {}) {
    const event = { type, channel: this.channel, payload: { ...payload, [this.idKey]: clientId }, optimistic: true };
    return new Promise((resolve, reject) => {
      const rollback = (err) => {
        const p = this.pending.get(clientId);
        if (!p) return;
        this.pending.delete(clientId);
        this._clearTimeout(p.timer);
        this._recompute();
        this.emit('rollback', { clientId, event, error: err });
        reject(err);
      };
      const timer = this._setTimeout(() => rollback(connectionError('optimistic: the server did not confirm the change in time', 'timeout')), timeoutMs);
      this.pending.set(clientId, { event, resolve, reject, timer });
      this._recompute();
      let sent;
      try {
        sent = send ? send(event) : this.client.publish(this.channel, type, event.payload);
      } catch (e) { sent = Promise.reject(e); }
      Promise.resolve(sent).catch((e) => rollback(e));
    });
  }

  close() {
    this._off();
    for (const [id, p] of this.pending) { this._clearTimeout(p.timer); p.reject(connectionError('optimistic: closed', 'closed')); this.pending.delete(id); }
  }
}

export function optimistic(client, channel, options) { return new Optimistic(client, channel, options); }

export default PgcastClient;
