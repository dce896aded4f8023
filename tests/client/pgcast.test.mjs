// Unit tests of client/pgcast.js under Node's own test runner, with a fake WebSocket,
// EventSource, fetch and clock.
import test from 'node:test';
import assert from 'node:assert/strict';
import { PgcastClient, backoffDelay, DEFAULTS, STATUS } from '../../client/pgcast.js';

// A manual clock: timers fire only when the test advances time.
function fakeEnv() {
  const env = { t: 0, timers: new Map(), nextId: 1, sockets: [], sources: [], fetches: [] };
  env.setTimeout = (fn, ms) => { const id = env.nextId++; env.timers.set(id, { at: env.t + ms, fn }); return id; };
  env.clearTimeout = (id) => env.timers.delete(id);
  env.now = () => env.t;
  env.advance = async (ms) => {
    const end = env.t + ms;
    for (;;) {
      const due = [...env.timers].filter(([, x]) => x.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      env.timers.delete(due[0]);
      env.t = due[1].at;
      due[1].fn();
      await flush();
    }
    env.t = end;
  };
  env.location = { protocol: 'http:', host: 'example.test' };
  env.WebSocket = class {
    constructor(url) { this.url = url; this.readyState = 0; this.sent = []; env.sockets.push(this); }
    send(d) { this.sent.push(JSON.parse(d)); }
    close() { this.readyState = 3; }
    open() { this.readyState = 1; this.onopen && this.onopen(); }
    drop() { this.readyState = 3; this.onclose && this.onclose({ code: 1006 }); }
    recv(m) { this.onmessage && this.onmessage({ data: JSON.stringify(m) }); }
  };
  env.EventSource = class {
    constructor(url) { this.url = url; this.readyState = 0; env.sources.push(this); }
    close() { this.readyState = 2; }
    recv(m) { this.onmessage && this.onmessage({ data: JSON.stringify(m) }); }
  };
  env.fetch = async (url, init) => {
    env.fetches.push({ url, init });
    return { status: 200, ok: true, json: async () => ({ events: env.pollEvents ? env.pollEvents.splice(0) : [], cursor: '' }) };
  };
  return env;
}
const flush = () => new Promise((r) => setImmediate(r));

test('backoff schedule: 1000, 1500, 2250, … capped at 30000', () => {
  const got = Array.from({ length: 12 }, (_, i) => backoffDelay(i, DEFAULTS.reconnect));
  assert.deepEqual(got.slice(0, 4), [1000, 1500, 2250, 3375]);
  assert.equal(Math.max(...got), 30000);
  assert.equal(got[11], 30000);
  for (let i = 1; i < got.length; i++) assert.ok(got[i] >= got[i - 1]);
});

test('reconnects with the backoff delays and gives up after maxAttempts', async () => {
  const env = fakeEnv();
  const c = new PgcastClient({ token: 'T', transports: ['websocket'], reconnect: { maxAttempts: 3 } }, env);
  const statuses = [];
  c.on('status', (s) => statuses.push(s));
  c.connect();
  await flush();
  assert.equal(env.sockets.length, 1);
  assert.equal(env.sockets[0].url, 'ws://example.test/realtime/ws?token=T');
  env.sockets[0].drop();
  await env.advance(999);
  assert.equal(env.sockets.length, 1, 'no reconnect before 1000 ms');
  await env.advance(1);
  assert.equal(env.sockets.length, 2, 'reconnect at 1000 ms');
  env.sockets[1].drop();
  await env.advance(1499);
  assert.equal(env.sockets.length, 2);
  await env.advance(1);
  assert.equal(env.sockets.length, 3, 'second reconnect after 1500 ms more');
  env.sockets[2].drop();
  await env.advance(2250);
  assert.equal(env.sockets.length, 4);
  env.sockets[3].drop();
  await env.advance(60000);
  assert.equal(env.sockets.length, 4, 'no attempt after maxAttempts');
  assert.equal(c.status, STATUS.ERROR);
  assert.deepEqual(statuses.slice(0, 2), ['connecting', 'reconnecting']);
});

test('outgoing queue keeps at most queueLimit messages and flushes them in order', async () => {
  const env = fakeEnv();
  const c = new PgcastClient({ transports: ['websocket'], queueLimit: 3 }, env);
  const full = [];
  c.on('queue-full', (m) => full.push(m));
  c.connect();
  await flush();
  for (let i = 0; i < 5; i++) c.send({ type: 'ping', timestamp: i });
  assert.equal(c.queue.length, 3);
  assert.equal(full.length, 2);
  env.sockets[0].open();
  assert.deepEqual(env.sockets[0].sent.map((m) => m.timestamp), [0, 1, 2]);
  assert.equal(c.queue.length, 0);
});

test('subscriptions are reference counted', async () => {
  const env = fakeEnv();
  const c = new PgcastClient({ transports: ['websocket'] }, env);
  c.connect();
  await flush();
  env.sockets[0].open();
  const ws = env.sockets[0];
  const off1 = c.subscribe('project:a', () => {});
  const off2 = c.subscribe('project:a', () => {});
  assert.equal(ws.sent.filter((m) => m.type === 'subscribe').length, 1, 'first subscriber subscribes');
  off1();
  assert.equal(ws.sent.filter((m) => m.type === 'unsubscribe').length, 0, 'not while one remains');
  off1();
  assert.equal(c.channels.get('project:a').refs, 1, 'calling an unsubscribe twice counts once');
  off2();
  assert.deepEqual(ws.sent.filter((m) => m.type === 'unsubscribe'), [{ type: 'unsubscribe', channel: 'project:a' }]);
});

test('resubscribes with since after a reconnect and drops repeated events', async () => {
  const env = fakeEnv();
  const c = new PgcastClient({ transports: ['websocket'] }, env);
  const got = [];
  c.connect();
  await flush();
  env.sockets[0].open();
  c.subscribe('project:a', (m) => got.push(m.seq));
  env.sockets[0].recv({ type: 'subscribed', channel: 'project:a', seq: 4 });
  for (const s of [5, 6]) env.sockets[0].recv({ type: 'x', channel: 'project:a', seq: s, payload: {}, timestamp: 0 });
  env.sockets[0].drop();
  await env.advance(1000);
  env.sockets[1].open();
  assert.deepEqual(env.sockets[1].sent[0], { type: 'subscribe', channel: 'project:a', since: 6 });
  for (const s of [6, 7]) env.sockets[1].recv({ type: 'x', channel: 'project:a', seq: s, payload: {}, timestamp: 0 });
  assert.deepEqual(got, [5, 6, 7]);
});

test('pings every pingIntervalMs and swallows pong', async () => {
  const env = fakeEnv();
  const c = new PgcastClient({ transports: ['websocket'] }, env);
  const errors = [];
  c.on('error', (e) => errors.push(e));
  c.connect();
  await flush();
  env.sockets[0].open();
  await env.advance(30000);
  await env.advance(30000);
  const pings = env.sockets[0].sent.filter((m) => m.type === 'ping');
  assert.equal(pings.length, 2);
  env.sockets[0].recv({ type: 'pong', timestamp: pings[0].timestamp });
  assert.equal(errors.length, 0);
});

test('polling happens only after the silence, each message resets it, a terminal event stops it', async () => {
  const env = fakeEnv();
  const c = new PgcastClient({ transports: ['poll'], terminalEvents: ['run.finished'] }, env);
  const got = [];
  c.subscribe('run:1', (m) => got.push(m.type));
  c.connect();
  await flush();
  await env.advance(3999);
  assert.equal(env.fetches.length, 0, 'no poll before 4 s of silence');
  c._handle({ type: 'step', channel: 'run:1', seq: 1, payload: {}, timestamp: 0 });
  await env.advance(3999);
  assert.equal(env.fetches.length, 0, 'a message reset the timer');
  await env.advance(1);
  assert.equal(env.fetches.length, 1, 'polled after 4 s of silence');
  assert.match(env.fetches[0].url, /\/realtime\/events\?channel=run%3A1&since=run%3A1%3D1/);
  env.pollEvents = [{ type: 'run.finished', channel: 'run:1', seq: 2, payload: {}, timestamp: 0 }];
  await env.advance(4000);
  assert.equal(env.fetches.length, 2);
  assert.deepEqual(got, ['step', 'run.finished']);
  await env.advance(60000);
  assert.equal(env.fetches.length, 2, 'no polling after the terminal event');
});

test('falls back to SSE while the WebSocket is down, and back to the WebSocket', async () => {
  const env = fakeEnv();
  const c = new PgcastClient({ token: 'T' }, env);
  const got = [];
  c.subscribe('project:a', (m) => got.push(m.seq), { since: 2 });
  c.connect();
  await flush();
  env.sockets[0].drop();
  await flush();
  assert.equal(env.sources.length, 1, 'EventSource opened');
  assert.match(env.sources[0].url, /\/realtime\/sse\?channel=project%3Aa&since=project%3Aa%3D2&token=T/);
  env.sources[0].recv({ type: 'x', channel: 'project:a', seq: 3, payload: {}, timestamp: 0 });
  await env.advance(1000);
  env.sockets[1].open();
  assert.equal(env.sources[0].readyState, 2, 'EventSource closed once the WebSocket is back');
  assert.deepEqual(env.sockets[1].sent[0], { type: 'subscribe', channel: 'project:a', since: 3 });
  env.sockets[1].recv({ type: 'x', channel: 'project:a', seq: 3, payload: {}, timestamp: 0 });
  env.sockets[1].recv({ type: 'x', channel: 'project:a', seq: 4, payload: {}, timestamp: 0 });
  assert.deepEqual(got, [3, 4]);
});

test('presence member list follows sync, join and leave', async () => {
  const env = fakeEnv();
  const c = new PgcastClient({ transports: ['websocket'] }, env);
  c.connect();
  await flush();
  env.sockets[0].open();
  const p = c.presence('project:a');
  p.join({ color: 'red' });
  assert.deepEqual(env.sockets[0].sent.slice(-1)[0], { type: 'presence.join', channel: 'project:a', payload: { color: 'red' } });
  env.sockets[0].recv({ type: 'presence.sync', channel: 'project:a', payload: { members: [{ connectionId: 'c1', userId: 'u1' }] } });
  env.sockets[0].recv({ type: 'presence.join', channel: 'project:a', payload: { connectionId: 'c2', userId: 'u2' } });
  assert.deepEqual(p.list().map((m) => m.userId), ['u1', 'u2']);
  env.sockets[0].recv({ type: 'presence.leave', channel: 'project:a', payload: { connectionId: 'c1' } });
  assert.deepEqual(p.list().map((m) => m.userId), ['u2']);
});
