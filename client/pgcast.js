// pgcast.js — the browser client of pgcast. One ES module, no dependencies.
//
//   import { PgcastClient } from '/pgcast.js';
//   const rt = new PgcastClient({ baseUrl: '/realtime', token: 'eyJ…' });
//   const off = rt.subscribe('project:abc', (msg) => console.log(msg));
//   rt.on('status', (s) => console.log('status', s));
//   await rt.publish('project:abc', 'project.updated', { name: 'x' });
//   const p = rt.presence('project:abc'); p.join({ color: 'red' }); p.on('change', (members) => …);
//
// Transports, in order: WebSocket (the sidecar at {baseUrl}/ws), then Server-Sent Events
// ({baseUrl}/sse), then polling ({baseUrl}/events). While the WebSocket is down the client
// keeps reconnecting it with back-off and meanwhile receives through the fallback; every
// event carries its channel position (seq), so switching transports loses and repeats
// nothing. See docs/client.md for the API and React hooks.

export const DEFAULTS = Object.freeze({
  baseUrl: '/realtime',
  wsUrl: null, // default: ws(s)://{host}{baseUrl}/ws
  token: null, // a string, or a function returning one (or a Promise of one)
  reconnect: Object.freeze({ initialDelayMs: 1000, multiplier: 1.5, maxDelayMs: 30000, maxAttempts: 10 }),
  queueLimit: 100, // outgoing messages kept while disconnected
  pingIntervalMs: 30000,
  pollSilenceMs: 4000, // poll only after this long without any message
  pollWaitSeconds: 0, // >0: long-poll
  presenceHeartbeatMs: 15000, // HTTP presence (fallback transports)
  terminalEvents: [], // event types after which polling stops
  transports: ['websocket', 'sse', 'poll'],
});

export const STATUS = Object.freeze({
  CONNECTING: 'connecting',
  CONNECTED: 'connected',
  RECONNECTING: 'reconnecting',
  DISCONNECTED: 'disconnected',
  ERROR: 'error',
});

// Delay before reconnect attempt `attempt` (0-based): 1000, 1500, 2250, … capped.
export function backoffDelay(attempt, opts = DEFAULTS.reconnect) {
  return Math.min(opts.initialDelayMs * Math.pow(opts.multiplier, attempt), opts.maxDelayMs);
}

const CONTROL_TYPES = new Set([
  'connected', 'subscribed', 'unsubscribed', 'published', 'pong', 'error', 'heartbeat', 'gap',
  'presence.join', 'presence.update', 'presence.leave', 'presence.sync',
]);

class Emitter {
  constructor() { this._handlers = new Map(); }
  on(name, fn) {
    if (!this._handlers.has(name)) this._handlers.set(name, new Set());
    this._handlers.get(name).add(fn);
    return () => this._handlers.get(name).delete(fn);
  }
  emit(name, ...args) {
    for (const fn of [...(this._handlers.get(name) || [])]) {
      try { fn(...args); } catch (e) { if (name !== 'error') this.emit('error', e); }
    }
  }
}

// Presence of one channel: the member list kept current, join/update/leave.
class Presence extends Emitter {
  constructor(client, channel) {
    super();
    this.client = client;
    this.channel = channel;
    this.members = new Map(); // connectionId -> member
    this.joined = null; // our data while joined
    this._hb = null;
  }
  list() { return [...this.members.values()]; }
  join(data = {}) { this.joined = data; this.client._presenceSend(this, 'join', data); }
  update(data = {}) { this.joined = data; this.client._presenceSend(this, 'update', data); }
  leave() { this.joined = null; this.client._presenceSend(this, 'leave'); }
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

export class PgcastClient extends Emitter {
  constructor(options = {}, env = globalThis) {
    super();
    this.opts = { ...DEFAULTS, ...options, reconnect: { ...DEFAULTS.reconnect, ...(options.reconnect || {}) } };
    this.env = {
      WebSocket: env.WebSocket,
      EventSource: env.EventSource,
      fetch: env.fetch && env.fetch.bind(env),
      setTimeout: (env.setTimeout || setTimeout).bind(env),
      clearTimeout: (env.clearTimeout || clearTimeout).bind(env),
      now: env.now || (() => Date.now()),
      location: env.location,
    };
    this.status = STATUS.DISCONNECTED;
    this.channels = new Map(); // name -> { refs, handlers: Set, seq: number|null }
    this.queue = []; // outgoing messages while the WebSocket is down
    this.pending = new Map(); // requestId -> { resolve, reject }
    this.presences = new Map();
    this.connectionId = null;
    this.transport = null; // 'websocket' | 'sse' | 'poll' | null
    this._ws = null;
    this._es = null;
    this._attempt = 0;
    this._timers = {};
    this._nextId = 1;
    this._closed = true;
    this._polling = false;
    this._terminal = false;
  }

  // ---- connection ----

  connect() {
    this._closed = false;
    this._terminal = false;
    this._attempt = 0;
    if (this.opts.transports.includes('websocket') && this.env.WebSocket) this._openWs();
    else this._startFallback();
    return this;
  }

  disconnect() {
    this._closed = true;
    for (const name of Object.keys(this._timers)) this._clear(name);
    this._closeWs();
    this._stopFallback();
    this._setStatus(STATUS.DISCONNECTED);
  }

  _setStatus(s) {
    if (this.status === s) return;
    this.status = s;
    this.emit('status', s);
  }

  _timer(name, ms, fn) {
    this._clear(name);
    this._timers[name] = this.env.setTimeout(() => { delete this._timers[name]; fn(); }, ms);
  }
  _clear(name) {
    if (this._timers[name] !== undefined) { this.env.clearTimeout(this._timers[name]); delete this._timers[name]; }
  }

  async _token() {
    const t = this.opts.token;
    return typeof t === 'function' ? await t() : t;
  }

  _wsUrl() {
    if (this.opts.wsUrl) return this.opts.wsUrl;
    const loc = this.env.location || { protocol: 'http:', host: 'localhost' };
    return `${loc.protocol === 'https:' ? 'wss:' : 'ws:'}//${loc.host}${this.opts.baseUrl}/ws`;
  }

  async _openWs() {
    this._setStatus(this._attempt === 0 && this.transport === null ? STATUS.CONNECTING : STATUS.RECONNECTING);
    const token = await this._token();
    if (this._closed) return;
    const url = this._wsUrl() + (token ? `?token=${encodeURIComponent(token)}` : '');
    let ws;
    try { ws = new this.env.WebSocket(url); } catch (e) { this._wsFailed(); return; }
    this._ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this._attempt = 0;
      this._stopFallback();
      this.transport = 'websocket';
      this._setStatus(STATUS.CONNECTED);
      for (const [name, ch] of this.channels) this._sendSubscribe(name, ch);
      for (const p of this.presences.values()) {
        if (p.joined) this._wsSend({ type: 'presence.join', channel: p.channel, payload: p.joined });
        this._wsSend({ type: 'presence.get', channel: p.channel });
      }
      const queued = this.queue.splice(0);
      for (const m of queued) this._wsSend(m);
      this._schedulePing();
    };
    ws.onmessage = (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch (e) { this.emit('error', new Error('pgcast: bad JSON from server')); return; }
      this._handle(msg);
    };
    ws.onerror = () => {}; // onclose follows and decides
    ws.onclose = () => {
      if (this._ws !== ws) return;
      this._ws = null;
      this._clear('ping');
      if (this._closed) return;
      if (opened) this._attempt = 0;
      this._wsFailed();
    };
  }

  _closeWs() {
    const ws = this._ws;
    this._ws = null;
    if (ws) { try { ws.close(1000); } catch (e) { /* already closed */ } }
  }

  // The WebSocket could not connect or dropped: receive through a fallback meanwhile, and
  // retry with back-off until maxAttempts.
  _wsFailed() {
    if (this.transport === 'websocket') this.transport = null;
    const r = this.opts.reconnect;
    if (this._attempt >= r.maxAttempts) {
      this._setStatus(this.transport ? STATUS.CONNECTED : STATUS.ERROR);
      this.emit('websocket-gave-up');
      if (!this.transport) this._startFallback();
      return;
    }
    const delay = backoffDelay(this._attempt, r);
    this._attempt += 1;
    if (!this.transport) this._startFallback();
    if (this.transport !== 'sse' && this.transport !== 'poll') this._setStatus(STATUS.RECONNECTING);
    this._timer('reconnect', delay, () => this._openWs());
  }

  _schedulePing() {
    this._timer('ping', this.opts.pingIntervalMs, () => {
      this._wsSend({ type: 'ping', timestamp: this.env.now() });
      this._schedulePing();
    });
  }

  _wsSend(msg) {
    if (!this._ws || this._ws.readyState !== 1) return false;
    this._ws.send(JSON.stringify(msg));
    return true;
  }

  // Sends now, or queues (at most queueLimit) while the WebSocket is down.
  send(msg) {
    if (this._wsSend(msg)) return true;
    if (this.queue.length >= this.opts.queueLimit) {
      this.emit('queue-full', msg);
      return false;
    }
    this.queue.push(msg);
    return true;
  }

  // ---- fallbacks ----

  _startFallback() {
    if (this._closed || this.transport === 'sse' || this.transport === 'poll') return;
    const t = this.opts.transports;
    if (t.includes('sse') && this.env.EventSource && this.channels.size > 0) this._openSse();
    else if (t.includes('poll') && this.env.fetch) this._startPolling();
  }

  _stopFallback() {
    if (this._es) { this._es.close(); this._es = null; }
    this._polling = false;
    this._clear('poll');
    this._clear('presence');
    if (this.transport === 'sse' || this.transport === 'poll') this.transport = null;
  }

  _cursor() {
    return [...this.channels].filter(([, ch]) => ch.seq !== null).map(([n, ch]) => `${n}=${ch.seq}`).join(',');
  }

  _query(extra = {}) {
    const q = new URLSearchParams();
    for (const name of this.channels.keys()) q.append('channel', name);
    const cursor = this._cursor();
    if (cursor) q.set('since', cursor);
    for (const [k, v] of Object.entries(extra)) if (v !== undefined && v !== null) q.set(k, v);
    return q;
  }

  async _openSse() {
    this.transport = 'sse';
    const q = this._query({ token: await this._token() });
    if (this.transport !== 'sse' || this._closed) return;
    const es = new this.env.EventSource(`${this.opts.baseUrl}/sse?${q}`);
    this._es = es;
    es.onopen = () => { if (this._es === es) this._setStatus(STATUS.CONNECTED); };
    es.onmessage = (ev) => {
      try { this._handle(JSON.parse(ev.data)); } catch (e) { this.emit('error', e); }
    };
    es.onerror = () => {
      if (this._es !== es || es.readyState !== 2) return; // 2 = CLOSED: the browser gave up
      this._es = null;
      this.transport = null;
      if (this.opts.transports.includes('poll') && this.env.fetch) this._startPolling();
    };
    this._startHttpPresence();
  }

  _startPolling() {
    this.transport = 'poll';
    this._polling = true;
    this._setStatus(STATUS.CONNECTED);
    this._resetSilence();
    this._startHttpPresence();
  }

  // Every message resets the silence timer; polling happens only when it runs out.
  _resetSilence() {
    if (!this._polling || this._terminal) return;
    this._timer('poll', this.opts.pollSilenceMs, () => this._pollOnce());
  }

  async _pollOnce() {
    if (!this._polling || this._terminal || this.channels.size === 0) { this._resetSilence(); return; }
    try {
      const q = this._query({ wait: this.opts.pollWaitSeconds || undefined });
      const res = await this.env.fetch(`${this.opts.baseUrl}/events?${q}`, { headers: await this._authHeaders() });
      if (res.status === 200) {
        const body = await res.json();
        for (const e of body.events || []) this._handle(e);
      }
    } catch (e) {
      this.emit('error', e);
    }
    this._resetSilence();
  }

  async _authHeaders() {
    const token = await this._token();
    return token ? { Authorization: `Bearer ${token}` } : {};
  }

  // ---- incoming messages ----

  _handle(msg) {
    this._resetSilence();
    switch (msg.type) {
      case 'connected': this.connectionId = msg.connectionId; this.emit('connected', msg); return;
      case 'pong': case 'heartbeat': return;
      case 'subscribed': {
        const ch = this.channels.get(msg.channel);
        if (ch && ch.seq === null) ch.seq = msg.seq;
        return;
      }
      case 'unsubscribed': return;
      case 'published': case 'error': {
        const p = msg.requestId !== undefined && this.pending.get(msg.requestId);
        if (p) {
          this.pending.delete(msg.requestId);
          if (msg.type === 'published') p.resolve(msg.seq); else p.reject(Object.assign(new Error(msg.message), { code: msg.code }));
        } else if (msg.type === 'error') {
          this.emit('error', Object.assign(new Error(msg.message), { code: msg.code }));
        }
        return;
      }
      case 'gap': {
        const ch = this.channels.get(msg.channel);
        if (!ch) return;
        if (ch.seq === null || msg.to > ch.seq) ch.seq = msg.to;
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
    if (CONTROL_TYPES.has(msg.type) || typeof msg.seq !== 'number' || !msg.channel) return;
    const ch = this.channels.get(msg.channel);
    if (!ch) return;
    if (ch.seq !== null && msg.seq <= ch.seq) return; // already seen (transport switch, resume)
    ch.seq = msg.seq;
    this._dispatch(ch, msg);
    if (this.opts.terminalEvents.includes(msg.type)) {
      this._terminal = true;
      this._clear('poll');
      this.emit('terminal', msg);
    }
  }

  _dispatch(ch, msg) {
    for (const h of [...ch.handlers]) {
      if (h.events && msg.type !== 'gap' && !h.events.includes(msg.type)) continue;
      try { h.fn(msg); } catch (e) { this.emit('error', e); }
    }
  }

  // ---- channels ----

  // Reference counted: the first subscriber of a channel sends `subscribe`, the last one
  // to leave sends `unsubscribe`. `since` resumes from a position (e.g. realtime.cursor
  // embedded in the page). Returns the function that unsubscribes.
  subscribe(channel, fn, { events = null, since = null } = {}) {
    let ch = this.channels.get(channel);
    const handler = { fn, events };
    if (!ch) {
      ch = { refs: 0, handlers: new Set(), seq: since };
      this.channels.set(channel, ch);
    }
    ch.refs += 1;
    ch.handlers.add(handler);
    if (ch.refs === 1) {
      if (this.transport === 'websocket') this._sendSubscribe(channel, ch);
      else if (this.transport === 'sse') { this._stopFallback(); this._openSse(); }
      else if (!this._closed && !this.transport && !this._ws) this._startFallback();
    }
    let done = false;
    return () => {
      if (done) return;
      done = true;
      ch.handlers.delete(handler);
      ch.refs -= 1;
      if (ch.refs === 0) {
        this.channels.delete(channel);
        if (this.transport === 'websocket') this._wsSend({ type: 'unsubscribe', channel });
        else if (this.transport === 'sse') { this._stopFallback(); if (this.channels.size) this._openSse(); }
      }
    };
  }

  _sendSubscribe(name, ch) {
    const msg = { type: 'subscribe', channel: name };
    if (ch.seq !== null) msg.since = ch.seq;
    this._wsSend(msg);
  }

  // Resolves with the event's seq.
  publish(channel, event, payload = {}) {
    if (this.transport === 'websocket' || (this.transport === null && this._ws)) {
      const requestId = `r${this._nextId++}`;
      return new Promise((resolve, reject) => {
        this.pending.set(requestId, { resolve, reject });
        if (!this.send({ type: 'publish', channel, event, payload, requestId })) {
          this.pending.delete(requestId);
          reject(new Error('pgcast: outgoing queue is full'));
        }
      });
    }
    return this._httpJson('POST', '/publish', { channel, type: event, payload }).then((b) => b.seq);
  }

  async _httpJson(method, path, body) {
    const headers = { 'Content-Type': 'application/json', ...(await this._authHeaders()) };
    const res = await this.env.fetch(`${this.opts.baseUrl}${path}`, { method, headers, body: body && JSON.stringify(body) });
    const data = await res.json();
    if (!res.ok) throw Object.assign(new Error((data.error && data.error.message) || res.statusText), { code: data.error && data.error.code, status: res.status });
    return data;
  }

  // ---- presence ----

  presence(channel) {
    let p = this.presences.get(channel);
    if (!p) {
      p = new Presence(this, channel);
      this.presences.set(channel, p);
      if (this.transport === 'websocket') this._wsSend({ type: 'presence.get', channel });
    }
    return p;
  }

  _presenceSend(p, action, data) {
    if (this.transport === 'websocket' || this._ws) {
      const msg = { type: `presence.${action}`, channel: p.channel };
      if (action !== 'leave') msg.payload = data;
      this.send(msg);
      return;
    }
    this._httpPresence(p, action === 'update' ? 'join' : action, data).catch((e) => this.emit('error', e));
  }

  // action null: only refresh the member list.
  async _httpPresence(p, action, data) {
    if (action) await this._httpJson('POST', '/presence', { channel: p.channel, action, data: data || p.joined || {} });
    const res = await this.env.fetch(`${this.opts.baseUrl}/presence?channel=${encodeURIComponent(p.channel)}`, { headers: await this._authHeaders() });
    if (res.ok) p._set((await res.json()).members || []);
  }

  // Fallback transports keep HTTP presence alive and the member list fresh.
  _startHttpPresence() {
    this._timer('presence', this.opts.presenceHeartbeatMs, () => {
      for (const p of this.presences.values())
        this._httpPresence(p, p.joined ? 'heartbeat' : null, p.joined).catch((e) => this.emit('error', e));
      if (this.transport === 'sse' || this.transport === 'poll') this._startHttpPresence();
    });
  }
}

export default PgcastClient;
