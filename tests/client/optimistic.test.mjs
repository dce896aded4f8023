// The optimistic-update helper: a change shows at once, is confirmed by the server's event
// carrying its client id, and is rolled back on an error or a timeout.
import test from 'node:test';
import assert from 'node:assert/strict';
import { PgcastClient, optimistic } from '../../client/pgcast.js';
import { fakeEnv, flush, ev } from './fake.mjs';

const reduce = (list, e) => (e.type === 'todo.added' ? [...list, { title: e.payload.title, pending: !!e.optimistic }] : list);

async function setup() {
  const env = fakeEnv();
  const c = new PgcastClient({ transports: ['websocket'] }, env);
  c.connect();
  await flush();
  env.sockets[0].open();
  const ws = env.sockets[0];
  ws.recv({ type: 'subscribed', channel: 'project:a', seq: 0 });
  return { env, c, ws };
}

test('applied at once, confirmed by the event with its client id (no double entry)', async () => {
  const { c, ws } = await setup();
  const todos = optimistic(c, 'project:a', { initial: [], reduce });
  const seen = [];
  todos.on('change', (s) => seen.push(s.length));
  const done = todos.mutate('todo.added', { title: 'milk' });
  assert.deepEqual(todos.state, [{ title: 'milk', pending: true }], 'shown at once');
  const pub = ws.sent.find((m) => m.type === 'publish');
  assert.equal(pub.payload.title, 'milk');
  assert.ok(pub.payload.clientId, 'published with a client id');
  ws.recv({ type: 'published', channel: 'project:a', seq: 1, requestId: pub.requestId });
  ws.recv(ev('project:a', 1, 'todo.added', pub.payload));
  const confirmed = await done;
  assert.equal(confirmed.seq, 1);
  assert.deepEqual(todos.state, [{ title: 'milk', pending: false }], 'the server event replaced the optimistic one');
  assert.equal(todos.pending.size, 0);
  ws.recv(ev('project:a', 2, 'todo.added', { title: 'eggs' }));
  assert.deepEqual(todos.state.map((t) => t.title), ['milk', 'eggs'], 'other events apply as they come');
});

test('rolled back when the publish fails', async () => {
  const { c, ws } = await setup();
  const todos = optimistic(c, 'project:a', { initial: [], reduce });
  const rolled = [];
  todos.on('rollback', (r) => rolled.push(r.error.code));
  const done = todos.mutate('todo.added', { title: 'x' });
  assert.equal(todos.state.length, 1);
  const pub = ws.sent.find((m) => m.type === 'publish');
  ws.recv({ type: 'error', code: 'forbidden', message: 'no', requestId: pub.requestId });
  await assert.rejects(done, (e) => e.code === 'forbidden');
  assert.deepEqual(todos.state, []);
  assert.deepEqual(rolled, ['forbidden']);
});

test('rolled back when the event does not come in time; a custom send (the application API) works too', async () => {
  const { env, c } = await setup();
  const sent = [];
  const todos = optimistic(c, 'project:a', { initial: [], reduce, timeoutMs: 5000, send: async (e) => { sent.push(e); } });
  const done = todos.mutate('todo.added', { title: 'late' });
  const failed = assert.rejects(done, (e) => e.code === 'timeout');
  await flush();
  assert.equal(sent.length, 1);
  assert.equal(sent[0].payload.title, 'late');
  await env.advance(4999);
  assert.equal(todos.state.length, 1);
  await env.advance(1);
  await failed;
  assert.deepEqual(todos.state, []);
});
