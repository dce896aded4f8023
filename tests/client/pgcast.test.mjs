// Unit tests of client/pgcast.js under Node's own test runner, with a fake WebSocket,
// EventSource, fetch and clock (tests/client/fake.mjs).
import test from 'node:test';
import assert from 'node:assert/strict';
import { PgcastClient, backoffDelay, DEFAULTS, STATUS, parseCursor, formatCursor } from '../../client/pgcast.js';
import { fakeEnv, flush, ev } from './fake.mjs';

const subs = (ws) => ws.sent.filter((m) => m.type === 'subscribe');

test('backoff schedule: 1000, 1500, 2250, … capped at 30000', () => {
  const got = Array.from({ length: 12 }, (_, i) => backoffDelay(i, DEFAULTS.reconnect));
  assert.deepEqual(got.slice(0, 4), [1000, 1500, 2250, 3375]);
  assert.equal(Math.max(...got), 30000);
  assert.equal(got[11], 30000);
  for (let i = 1; i < got.length; i++) assert.ok(got[i] >= got[i - 1]);
});

test('cursor text parses and formats', () => {
  assert.deepEqual([...parseCursor('project:a=4,user:u1=0,bad,x=-1')], [['project:a', 4], ['user:u1', 0]]);
  assert.equal(formatCursor([['a', 1], ['b', null], ['c', 0]]), 'a=1,c=0');
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
  assert.deepEqual(statuses.slice(0, 1), ['connecting']);
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
  assert.equal(subs(ws).length, 1, 'first subscriber subscribes');
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
  for (const s of [5, 6]) env.sockets[0].recv(ev('project:a', s));
  env.sockets[0].drop();
  await env.advance(1000);
  env.sockets[1].open();
  assert.deepEqual(env.sockets[1].sent[0], { type: 'subscribe', channel: 'project:a', since: 6 });
  for (const s of [6, 7]) env.sockets[1].recv(ev('project:a', s));
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

test('polling without since starts live: the retained history is skipped, not delivered', async () => {
  const env = fakeEnv();
  const c = new PgcastClient({ transports: ['poll'], terminalEvents: ['run.finished'] }, env);
  const got = [];
  c.subscribe('run:1', (m) => got.push(m.seq));
  // the position request (limit=0) answers the current cursor and no events
  env.pollPages.push({ events: [], cursor: 'run:1=3' });
  env.pollPages.push({ events: [], cursor: 'run:1=3' });
  c.connect();
  await env.advance(0);
  assert.equal(env.fetches.length, 2, 'the position, then one poll');
  assert.match(env.fetches[0].url, /\/realtime\/events\?channel=run%3A1&limit=0$/);
  assert.match(env.fetches[1].url, /\/realtime\/events\?channel=run%3A1&since=run%3A1%3D3$/);
  assert.deepEqual(got, [], 'nothing old delivered as new');
  assert.equal(c.status, 'connected');
  assert.equal(c.transport, 'poll');
  env.pollPages.push({ events: [ev('run:1', 4, 'step')], cursor: 'run:1=4' });
  await env.advance(3999);
  assert.equal(env.fetches.length, 2, 'no poll before 4 s of silence');
  await env.advance(1);
  assert.equal(env.fetches.length, 3, 'polled after 4 s of silence');
  assert.deepEqual(got, [4]);
  env.pollPages.push({ events: [ev('run:1', 5, 'run.finished')], cursor: 'run:1=5' });
  await env.advance(4000);
  assert.match(env.fetches[3].url, /since=run%3A1%3D4/);
  assert.deepEqual(got, [4, 5]);
  await env.advance(60000);
  assert.equal(env.fetches.length, 4, 'no polling after the terminal event');
});

test('a fallback opens only when the WebSocket fails: no SSE while it connects or works', async () => {
  const env = fakeEnv();
  const c = new PgcastClient({ token: 'T' }, env);
  c.connect();
  c.subscribe('project:a', () => {}); // the documented connect-then-subscribe order
  await env.advance(2000);
  assert.equal(env.sources.length, 0, 'no EventSource while the WebSocket connects');
  env.sockets[0].open();
  await env.advance(60000);
  assert.equal(env.sources.length, 0, 'none while it works');
  assert.equal(env.fetches.length, 0, 'no HTTP request at all');
  assert.equal(c.transport, 'websocket');
});

test('a WebSocket that does not open in wsOpenTimeoutMs gets a fallback meanwhile', async () => {
  const env = fakeEnv();
  const c = new PgcastClient({ token: 'T', wsOpenTimeoutMs: 5000 }, env);
  c.subscribe('project:a', () => {});
  c.connect();
  await env.advance(4999);
  assert.equal(env.sources.length, 0);
  await env.advance(1);
  assert.equal(env.sources.length, 1, 'SSE opened after 5 s');
  env.sources[0].open();
  assert.equal(c.transport, 'sse');
  env.sockets[0].open();
  assert.equal(env.sources[0].readyState, 2, 'SSE closed when the WebSocket opened');
  assert.equal(c.transport, 'websocket');
});

test('falls back to SSE while the WebSocket is down; status says connected via sse, never reconnecting; back to the WebSocket', async () => {
  const env = fakeEnv();
  const c = new PgcastClient({ token: 'T' }, env);
  const got = [];
  const statuses = [];
  c.on('status', (s, t) => statuses.push(`${s}${t ? `/${t}` : ''}`));
  c.subscribe('project:a', (m) => got.push(m.seq), { since: 2 });
  c.connect();
  await flush();
  env.sockets[0].drop();
  await flush();
  assert.equal(env.sources.length, 1, 'EventSource opened');
  assert.match(env.sources[0].url, /^\/realtime\/sse\?channel=project%3Aa&since=project%3Aa%3D2&token=T$/);
  env.sources[0].open();
  assert.equal(c.status, 'connected');
  assert.equal(c.transport, 'sse');
  env.sources[0].recv(ev('project:a', 3), 'project:a=3');
  for (let i = 0; i < 5; i++) {
    await env.advance(backoffDelay(i));
    env.sockets[env.sockets.length - 1].drop();
    assert.equal(c.status, 'connected', 'still connected (via sse) while the WebSocket retries');
  }
  await env.advance(backoffDelay(5));
  env.sockets[env.sockets.length - 1].open();
  assert.equal(env.sources[0].readyState, 2, 'EventSource closed once the WebSocket is back');
  assert.deepEqual(subs(env.sockets[env.sockets.length - 1])[0], { type: 'subscribe', channel: 'project:a', since: 3 });
  env.sockets[env.sockets.length - 1].recv(ev('project:a', 3));
  env.sockets[env.sockets.length - 1].recv(ev('project:a', 4));
  assert.deepEqual(got, [3, 4]);
  assert.ok(!statuses.includes('reconnecting'), statuses.join(' '));
  assert.deepEqual(statuses, ['connecting', 'connected/sse', 'connected/websocket']);
});

test('a WebSocket endpoint that answers 404 is retried rarely, not at the reconnect pace', async () => {
  const env = fakeEnv();
  env.wsProbeStatus = 404;
  const c = new PgcastClient({ token: 'T' }, env);
  c.subscribe('project:a', () => {});
  c.connect();
  await flush();
  env.sockets[0].drop();
  await env.advance(0);
  assert.ok(env.fetches.some((f) => f.url === 'http://example.test/realtime/ws'), 'the WebSocket URL was probed');
  env.sources[0].open();
  env.sources[0].recv({ type: 'heartbeat', timestamp: 0 }); // it delivers (see sseSilenceMs)
  await env.advance(120000);
  assert.equal(env.sockets.length, 1, `no WebSocket attempt in 2 minutes (got ${env.sockets.length})`);
  assert.equal(c.transport, 'sse');
  await env.advance(DEFAULTS.wsUnavailableRetryMs);
  assert.equal(env.sockets.length, 2, 'tried again after wsUnavailableRetryMs');
  env.sockets[1].open();
  assert.equal(c.transport, 'websocket');
});

test('a WebSocket endpoint that is there (426) but down is retried at the reconnect pace', async () => {
  const env = fakeEnv();
  const c = new PgcastClient({ token: 'T' }, env);
  c.subscribe('project:a', () => {});
  c.connect();
  await flush();
  env.sockets[0].drop();
  await env.advance(0);
  env.sources[0].open();
  for (let i = 0; i < 4; i++) { await env.advance(backoffDelay(i)); env.sockets[env.sockets.length - 1].drop(); }
  assert.equal(env.sockets.length, 5);
});

test('subscribe() after the WebSocket failed uses SSE, not polling', async () => {
  const env = fakeEnv();
  const c = new PgcastClient({ token: 'T' }, env);
  c.connect();
  await flush();
  env.sockets[0].drop();
  await env.advance(0);
  assert.equal(c.status, 'connected', 'nothing to stream yet: HTTP is ready');
  c.subscribe('project:a', () => {});
  await env.advance(0);
  assert.equal(env.sources.length, 1, 'SSE opened for the new subscription');
  assert.equal(env.fetches.filter((f) => f.url.includes('/events')).length, 0, 'no polling');
  env.sources[0].open();
  assert.equal(c.transport, 'sse');
  c.subscribe('project:b', () => {});
  await env.advance(0);
  assert.equal(env.sources.length, 2, 'a second channel reopens the stream with both');
  assert.match(env.sources[1].url, /channel=project%3Aa&channel=project%3Ab/);
  assert.equal(env.sources[0].readyState, 2);
});

test("transports ['sse','poll'] with connect-then-subscribe use SSE", async () => {
  const env = fakeEnv();
  const c = new PgcastClient({ token: 'T', transports: ['sse', 'poll'] }, env);
  c.connect();
  c.subscribe('project:a', () => {});
  await env.advance(10000);
  assert.equal(env.sockets.length, 0);
  assert.equal(env.sources.length, 1);
  assert.equal(env.fetches.filter((f) => f.url.includes('/events')).length, 0, 'no polling');
  env.sources[0].open();
  assert.equal(c.transport, 'sse');
});

test('an SSE endpoint that refuses falls back to polling, and SSE is tried again later', async () => {
  const env = fakeEnv();
  const c = new PgcastClient({ token: 'T', transports: ['sse', 'poll'] }, env);
  const got = [];
  c.subscribe('project:a', (m) => got.push(m.seq), { since: 5 });
  c.connect();
  await env.advance(0);
  env.sources[0].refuse();
  env.pollPages.push({ events: [ev('project:a', 6)], cursor: 'project:a=6' });
  await env.advance(0);
  assert.equal(c.transport, 'poll');
  assert.deepEqual(got, [6]);
  await env.advance(1000);
  assert.equal(env.sources.length, 2, 'SSE tried again after the back-off');
  assert.match(env.sources[1].url, /since=project%3Aa%3D6/);
  env.sources[1].open();
  env.sources[1].recv({ type: 'heartbeat', timestamp: 0 }); // it delivers (see sseSilenceMs)
  assert.equal(c.transport, 'sse');
  const polls = () => env.fetches.filter((f) => f.url.includes('/events')).length;
  const n = polls();
  await env.advance(60000);
  assert.equal(polls(), n, 'polling stopped once SSE delivers');
});

test('SSE positions come from the cursor in id: a channel without events still resumes exactly', async () => {
  const env = fakeEnv();
  const c = new PgcastClient({ token: 'T' }, env);
  c.subscribe('project:a', () => {});
  c.connect();
  await flush();
  env.sockets[0].drop();
  await env.advance(0);
  env.sources[0].open();
  env.sources[0].recv({ type: 'heartbeat', timestamp: 1 }, 'project:a=41');
  await env.advance(1000);
  env.sockets[1].open();
  assert.deepEqual(subs(env.sockets[1])[0], { type: 'subscribe', channel: 'project:a', since: 41 });
});

test('wsUrl follows baseUrl (not the page); credentials for another origin', async () => {
  const env = fakeEnv();
  const c = new PgcastClient({ baseUrl: 'https://rt.example.com/realtime', token: 'T', credentials: 'include' }, env);
  assert.equal(c.wsUrl, 'wss://rt.example.com/realtime/ws');
  const rel = new PgcastClient({ baseUrl: '/realtime' }, env);
  assert.equal(rel.wsUrl, 'ws://example.test/realtime/ws');
  const own = new PgcastClient({ baseUrl: '/realtime', wsUrl: 'wss://ws.example.com/ws' }, env);
  assert.equal(own.wsUrl, 'wss://ws.example.com/ws');
  c.subscribe('project:a', () => {});
  c.connect();
  await flush();
  assert.equal(env.sockets[0].url, 'wss://rt.example.com/realtime/ws?token=T');
  env.sockets[0].drop();
  await env.advance(0);
  assert.match(env.sources[0].url, /^https:\/\/rt\.example\.com\/realtime\/sse\?/);
  assert.deepEqual(env.sources[0].init, { withCredentials: true });
  await c.publish('project:a', 'x', {});
  const pub = env.fetches.find((f) => f.url.endsWith('/publish'));
  assert.equal(pub.url, 'https://rt.example.com/realtime/publish');
  assert.equal(pub.init.credentials, 'include');
  assert.equal(pub.init.headers.Authorization, 'Bearer T');
});

test('publish: over the WebSocket when open, over HTTP while a fallback delivers', async () => {
  const env = fakeEnv();
  const c = new PgcastClient({ token: 'T' }, env);
  c.connect();
  await flush();
  const early = c.publish('project:a', 'x', { a: 1 }); // queued while connecting
  env.sockets[0].open();
  const p = env.sockets[0].sent.find((m) => m.type === 'publish');
  assert.ok(p, 'queued publish sent on open');
  env.sockets[0].recv({ type: 'published', channel: 'project:a', seq: 7, requestId: p.requestId });
  assert.equal(await early, 7);
  const lost = c.publish('project:a', 'x', {});
  env.sockets[0].drop();
  await assert.rejects(lost, (e) => e.code === 'connection_lost');
  await env.advance(0);
  assert.equal(await c.publish('project:a', 'x', {}), 99, 'HTTP publish while the WebSocket is down');
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
  p.update({ color: 'blue' });
  assert.deepEqual(env.sockets[0].sent.slice(-1)[0], { type: 'presence.update', channel: 'project:a', payload: { color: 'blue' } });
  env.sockets[0].recv({ type: 'presence.sync', channel: 'project:a', payload: { members: [{ connectionId: 'c1', userId: 'u1' }] } });
  env.sockets[0].recv({ type: 'presence.join', channel: 'project:a', payload: { connectionId: 'c2', userId: 'u2' } });
  assert.deepEqual(p.list().map((m) => m.userId), ['u1', 'u2']);
  env.sockets[0].recv({ type: 'presence.leave', channel: 'project:a', payload: { connectionId: 'c1' } });
  assert.deepEqual(p.list().map((m) => m.userId), ['u2']);
});

test('presence over HTTP while a fallback delivers: join with this connection id, heartbeats', async () => {
  const env = fakeEnv();
  const c = new PgcastClient({ token: 'T', transports: ['sse'] }, env);
  c.subscribe('project:a', () => {});
  const p = c.presence('project:a');
  p.join({ color: 'red' });
  c.connect();
  await env.advance(0);
  const posts = () => env.fetches.filter((f) => f.url.endsWith('/presence') && f.init.method === 'POST').map((f) => JSON.parse(f.init.body));
  assert.equal(posts()[0].action, 'join');
  assert.ok(posts()[0].connectionId, 'a connection id of its own');
  await env.advance(15000);
  assert.equal(posts()[1].action, 'heartbeat');
  p.leave();
  await env.advance(0);
  assert.equal(posts().slice(-1)[0].action, 'leave');
});

test("transports ['websocket']: no HTTP presence or stream while the WebSocket is down", async () => {
  const env = fakeEnv();
  const c = new PgcastClient({ token: 'T', transports: ['websocket'] }, env);
  c.subscribe('project:a', () => {});
  c.presence('project:a').join({ a: 1 });
  c.connect();
  await flush();
  env.sockets[0].drop();
  await env.advance(20000);
  assert.equal(env.sources.length, 0);
  assert.deepEqual(env.fetches.filter((f) => !f.url.endsWith('/ws')), [], 'only the WebSocket URL was asked');
  assert.equal(c.status, 'connecting', 'it never connected');
});

const jwt = (claims) => `h.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.s`;

test('a token function renews the WebSocket in-band (auth) before exp', async () => {
  const env = fakeEnv();
  const tokens = [jwt({ sub: 'u', exp: 100 }), jwt({ sub: 'u', exp: 200 }), jwt({ sub: 'u', exp: 300 })];
  let calls = 0;
  const c = new PgcastClient({ token: () => tokens[Math.min(calls++, 2)], transports: ['websocket'] }, env);
  c.connect();
  await flush();
  const ws = env.sockets[0];
  assert.ok(ws.url.endsWith(encodeURIComponent(tokens[0])));
  ws.open();
  await env.advance(39999);
  assert.equal(ws.sent.filter((m) => m.type === 'auth').length, 0, 'not before exp - renewBeforeMs');
  await env.advance(1);
  const auth = ws.sent.filter((m) => m.type === 'auth');
  assert.equal(auth.length, 1);
  assert.equal(auth[0].token, tokens[1]);
  ws.recv({ type: 'authed', exp: 200, requestId: auth[0].requestId });
  await env.advance(100000);
  assert.equal(ws.sent.filter((m) => m.type === 'auth').length, 2, 'renewed again before the new exp');
  assert.equal(env.sockets.length, 1, 'on the same connection');
});

test('an SSE stream ended by token_expired reopens at once with a fresh token from the function', async () => {
  const env = fakeEnv();
  let n = 0;
  const c = new PgcastClient({ token: () => `T${++n}`, transports: ['sse'] }, env);
  c.subscribe('project:a', () => {}, { since: 3 });
  c.connect();
  await env.advance(0);
  assert.match(env.sources[0].url, /token=T1/);
  env.sources[0].open();
  env.sources[0].recv({ type: 'error', code: 'token_expired', message: 'expired' }, 'project:a=5');
  await env.advance(0);
  assert.equal(env.sources[0].readyState, 2, 'the old stream is closed');
  assert.equal(env.sources.length, 2);
  assert.match(env.sources[1].url, /since=project%3Aa%3D5&token=T2$/);
});
