// An SSE stream that opens (or stays opening) but delivers nothing, as behind mod_fcgid's
// 64 KiB output buffer on a hosting account: the client long-polls instead after
// sseSilenceMs and tries SSE again after sseSilenceRetryMs (docs/shared-hosting.md).
import test from 'node:test';
import assert from 'node:assert/strict';
import { PgcastClient } from '../../client/pgcast.js';
import { fakeEnv, ev } from './fake.mjs';

const polls = (env) => env.fetches.filter((f) => new URL(f.url, 'http://x/').pathname.endsWith('/events'));

for (const opens of [true, false]) {
  test(`an SSE stream that ${opens ? 'opened but' : 'never opened and'} delivers nothing: long-polling after sseSilenceMs, SSE again after sseSilenceRetryMs`, async () => {
    const env = fakeEnv();
    const c = new PgcastClient({ token: 'T', transports: ['sse', 'poll'] }, env);
    const got = [];
    c.subscribe('project:a', (m) => got.push(m.seq), { since: 2 });
    c.connect();
    await env.advance(10);
    assert.equal(env.sources.length, 1, 'SSE first');
    if (opens) env.sources[0].open();
    await env.advance(44000);
    assert.equal(polls(env).length, 0, 'no polling while the stream may still deliver');
    assert.equal(env.sources[0].readyState, opens ? 1 : 0);
    env.pollPages.push({ events: [ev('project:a', 3)], cursor: 'project:a=3' });
    await env.advance(1000);
    assert.equal(env.sources[0].readyState, 2, 'the silent stream is closed after 45 s');
    assert.ok(polls(env).length >= 1, 'polling instead');
    const q = new URL(polls(env)[0].url, 'http://x/').searchParams;
    assert.equal(q.get('wait'), null, 'a first plain poll: it answers at once');
    assert.equal(q.get('since'), 'project:a=2', 'from where the client was');
    assert.deepEqual(got, [3], 'the polled event is delivered');
    assert.equal(c.transport, 'poll');
    assert.equal(c.status, 'connected');
    await env.advance(5000);
    const q2 = new URL(polls(env)[1].url, 'http://x/').searchParams;
    assert.equal(q2.get('wait'), '20', 'then long-polls');
    assert.equal(q2.get('since'), 'project:a=3');
    await env.advance(590000);
    assert.equal(env.sources.length, 1, 'SSE is not tried again before sseSilenceRetryMs');
    await env.advance(11000);
    assert.equal(env.sources.length, 2, 'SSE tried again after sseSilenceRetryMs');
    assert.match(env.sources[1].url, /since=project%3Aa%3D3/);
    c.disconnect();
  });
}

test('a stream whose first message (a heartbeat) comes within sseSilenceMs is kept', async () => {
  const env = fakeEnv();
  const c = new PgcastClient({ token: 'T', transports: ['sse', 'poll'] }, env);
  c.subscribe('project:a', () => {}, { since: 2 });
  c.connect();
  await env.advance(10);
  env.sources[0].open();
  await env.advance(30000);
  env.sources[0].recv({ type: 'heartbeat', timestamp: 1 }, 'project:a=2');
  await env.advance(600000);
  assert.equal(env.sources.length, 1);
  assert.equal(env.sources[0].readyState, 1, 'still open');
  assert.equal(polls(env).length, 0, 'never polled');
  c.disconnect();
});

test('a stream that fails and reconnects by itself is not taken for silent', async () => {
  const env = fakeEnv();
  const c = new PgcastClient({ token: 'T', transports: ['sse', 'poll'] }, env);
  c.subscribe('project:a', () => {}, { since: 2 });
  c.connect();
  await env.advance(10);
  const es = env.sources[0];
  for (let i = 0; i < 4; i++) {
    await env.advance(30000);
    es.onerror({}); // readyState 0: the browser reconnects
  }
  assert.equal(es.readyState, 0, 'not closed by the client');
  assert.equal(polls(env).length, 0);
  c.disconnect();
});
