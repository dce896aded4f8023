// Tabs sharing one connection, in one Node process: real BroadcastChannel and timers, an
// in-memory server reached by WebSocket (tests/client/fake.mjs). Without Web Locks (as
// in Node) the tabs elect their leader by heartbeats.
import test from 'node:test';
import assert from 'node:assert/strict';
import { PgcastClient } from '../../client/pgcast.js';
import { FakeServer, until, sleep } from './fake.mjs';

let group = 0;
function tabs(server, n, opts = {}) {
  const env = {
    WebSocket: server.WebSocket,
    BroadcastChannel,
    document: {}, // a browser-like environment (Node alone does not share)
    setTimeout,
    clearTimeout,
    location: { href: `http://tabs${group}.test/`, host: `tabs${group}.test`, protocol: 'http:' },
  };
  const base = { token: 'T', transports: ['websocket'], shareHeartbeatMs: 50, shareTimeoutMs: 1500, ...opts };
  const out = [];
  for (let i = 0; i < n; i++) {
    const c = new PgcastClient(base, env);
    c.got = [];
    out.push(c);
  }
  group += 1;
  return out;
}

const leaders = (ts) => ts.filter((t) => t.role === 'leader');

test('three tabs share one connection; closing the leader mid-stream loses and doubles nothing', async () => {
  const server = new FakeServer();
  const ts = tabs(server, 3);
  for (const t of ts) {
    t.connect();
    t.subscribe('project:a', (m) => t.got.push(m.seq));
  }
  await until(() => leaders(ts).length === 1 && ts.every((t) => t.status === 'connected'), 5000, 'one leader, all connected');
  // (without Web Locks two tabs starting at once may both lead for a moment; one yields)
  await until(() => server.open === 1 && leaders(ts).length === 1, 5000, 'one WebSocket for the three tabs');
  await sleep(50);
  let published = 0;
  const pub = (k) => { for (let i = 0; i < k; i++) { server.publish('project:a'); published++; } };
  pub(5);
  await until(() => ts.every((t) => t.got.length === 5), 3000, 'first events');
  const first = leaders(ts)[0];
  const stream = setInterval(() => pub(1), 3);
  await sleep(30);
  first.disconnect(); // the leader tab closes mid-stream
  await sleep(200);
  clearInterval(stream);
  const rest = ts.filter((t) => t !== first);
  await until(() => leaders(rest).length === 1, 5000, 'a new leader');
  pub(3);
  const want = Array.from({ length: published }, (_, i) => i + 1);
  await until(() => rest.every((t) => t.got.length >= published), 5000, 'every event');
  await sleep(50);
  for (const t of rest) assert.deepEqual(t.got, want, 'every event once, in order');
  await until(() => server.open === 1, 5000, 'one connection again');
  for (const t of rest) t.disconnect();
});

test('a leader that stops answering (asleep) is replaced; the tabs resume from the lowest position', async () => {
  const server = new FakeServer();
  const ts = tabs(server, 3);
  for (const t of ts) { t.connect(); t.subscribe('project:b', (m) => t.got.push(m.seq)); }
  await until(() => leaders(ts).length === 1 && ts.every((t) => t.status === 'connected'), 5000, 'one leader');
  await sleep(50);
  for (let i = 0; i < 3; i++) server.publish('project:b');
  await until(() => ts.every((t) => t.got.length === 3), 3000, 'first events');
  const sleeper = leaders(ts)[0];
  // the leader freezes: its timers and messages stop, its WebSocket is gone
  const link = sleeper._link;
  link.timers.clearAll();
  link.bc.onmessage = null;
  link._post = () => {};
  link.conn.stop();
  for (let i = 0; i < 4; i++) server.publish('project:b');
  const rest = ts.filter((t) => t !== sleeper);
  await until(() => leaders(rest).length === 1, 5000, 'a new leader');
  await until(() => rest.every((t) => t.got.length >= 7), 5000, 'the missed events');
  await sleep(50);
  for (const t of rest) assert.deepEqual(t.got, [1, 2, 3, 4, 5, 6, 7]);
  for (const t of ts) t.disconnect();
});

test('each tab keeps its own subscriptions; publish from a follower goes through the leader', async () => {
  const server = new FakeServer();
  const [a, b] = tabs(server, 2);
  a.connect(); b.connect();
  await until(() => leaders([a, b]).length === 1 && a.status === 'connected' && b.status === 'connected', 5000, 'connected');
  const follower = a.role === 'follower' ? a : b;
  const leader = follower === a ? b : a;
  follower.subscribe('project:f', (m) => follower.got.push(m.seq));
  leader.subscribe('project:l', (m) => leader.got.push(m.seq));
  await sleep(100);
  const seq = await follower.publish('project:f', 'x', { v: 1 });
  assert.equal(seq, 1);
  server.publish('project:l');
  await until(() => follower.got.length === 1 && leader.got.length === 1, 3000, 'events');
  await sleep(50);
  assert.deepEqual(follower.got, [1]);
  assert.deepEqual(leader.got, [1]);
  await until(() => server.open === 1, 5000, 'one WebSocket for the two tabs');
  a.disconnect(); b.disconnect();
});

test('tabs with different tokens do not share', async () => {
  const server = new FakeServer();
  const [a] = tabs(server, 1, { token: 'A' });
  group -= 1;
  const [b] = tabs(server, 1, { token: 'B' });
  a.connect(); b.connect();
  await until(() => a.status === 'connected' && b.status === 'connected', 5000, 'connected');
  assert.equal(a.role, 'leader');
  assert.equal(b.role, 'leader');
  assert.equal(server.opened, 2);
  a.disconnect(); b.disconnect();
});

test('in Node (no document, no Web Locks) a client does not share', async () => {
  const server = new FakeServer();
  const c = new PgcastClient({ token: 'T', transports: ['websocket'] }, { WebSocket: server.WebSocket, BroadcastChannel, setTimeout, clearTimeout });
  c.connect();
  assert.equal(c.role, 'solo');
  await until(() => c.status === 'connected', 3000, 'connected');
  c.disconnect();
});
