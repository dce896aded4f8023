// pgcast.js (client/pgcast.js) in node on the npm `eventsource` package and fetch:
//   node pgcast_client.mjs ES_MODULE BASE_URL CHANNEL TOKEN
// subscribes to CHANNEL over SSE (polling allowed as its fallback) and prints one JSON
// line per EventSource it opens ({"t":"es"}), per busy answer ({"t":"busy"}), per event
// ({"t":"event","seq":N}) and per error the client reports ({"t":"error",...}).
const [, , esModule, base, channel, token] = process.argv;
const { EventSource } = await import(esModule);
const { PgcastClient } = await import(new URL('../../client/pgcast.js', import.meta.url));
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
class CountingEventSource extends EventSource {
  constructor(url, init) {
    super(url, init);
    out({ t: 'es' });
    this.addEventListener('message', (e) => { if (e.data.includes('"code":"busy"')) out({ t: 'busy' }); });
  }
}
const env = { EventSource: CountingEventSource, fetch: globalThis.fetch, setTimeout, clearTimeout,
              location: new URL(base) };
const c = new PgcastClient({ baseUrl: `${base}/realtime`, token, transports: ['sse', 'poll'], share: false,
                             pollSilenceMs: 500 }, env);
c.on('error', (e) => out({ t: 'error', code: e && e.code, message: String(e && e.message) }));
c.connect();
c.subscribe(channel, (m) => { if (m && m.seq) out({ t: 'event', seq: m.seq }); });
setInterval(() => {}, 1000);
