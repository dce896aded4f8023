#!/bin/bash
# client/ as an npm package: `npm pack` makes a tarball holding every file the exports
# map names, with no runtime dependencies; installed into a fresh project it imports as
# 'pgcast' and 'pgcast/react'; its TypeScript declarations compile a small program under
# --strict (and refuse a wrong one); the React hooks run under react-test-renderer.
# typescript, react and react-test-renderer come from the npm registry (cache in
# build/npm-cache); without the registry those checks are skipped.
source "$PGCAST_ROOT/tests/lib/tap.sh"
skip() { _tap_n=$((_tap_n + 1)); echo "ok $_tap_n # SKIP $*"; }
work=$(mktemp -d "$PGCAST_TEST_WORK/package.XXXXXX")
cache="$PGCAST_ROOT/build/npm-cache"
mkdir -p "$cache"
export npm_config_cache="$cache" npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false

if ! command -v npm >/dev/null; then
    # Debian's nodejs comes without npm (its own package); NodeSource's includes it
    for what in "npm pack makes a tarball" "the package installs, imports and type-checks" "the React hooks run"; do
        skip "$what: npm is not installed"
    done
    tap_done
fi
tarball=$(cd "$PGCAST_ROOT/client" && npm pack --silent --pack-destination "$work" 2>"$work/pack.err" | tail -n 1)
if [ -n "$tarball" ] && [ -f "$work/$tarball" ]; then ok "npm pack makes $tarball"; else not_ok "npm pack makes a tarball"; sed 's/^/# /' "$work/pack.err"; tap_done; fi
tar -tzf "$work/$tarball" | sed 's|^package/||' | sort >"$work/files"
missing=$(node -e '
  const pkg = require(process.argv[1]);
  const have = new Set(require("fs").readFileSync(process.argv[2], "utf8").split("\n"));
  const want = new Set([pkg.main, pkg.types]);
  const walk = (v) => { if (typeof v === "string") want.add(v); else if (v) Object.values(v).forEach(walk); };
  walk(pkg.exports);
  console.log([...want].map((p) => p.replace(/^\.\//, "")).filter((p) => !have.has(p)).join(" "));
' "$PGCAST_ROOT/client/package.json" "$work/files")
is "the tarball holds every file the exports map, main and types name" "$missing" ""
like "it holds the module, the React entry point and their declarations" "$(tr '\n' ' ' <"$work/files")" "pgcast.d.ts .*pgcast.js .*react.d.ts .*react.js"
is "no runtime dependencies" "$(node -p 'Object.keys(require(process.argv[1]).dependencies || {}).length' "$PGCAST_ROOT/client/package.json")" "0"
is "React is an optional peer dependency" \
   "$(node -p 'const p = require(process.argv[1]); [!!p.peerDependencies.react, p.peerDependenciesMeta.react.optional].join()' "$PGCAST_ROOT/client/package.json")" "true,true"

app="$work/app"
mkdir -p "$app"
echo '{"name":"pgcast-package-check","private":true,"type":"module"}' >"$app/package.json"
if ! (cd "$app" && npm install --silent "$work/$tarball" >"$work/install1.log" 2>&1); then
    not_ok "the tarball installs"; sed 's/^/# /' "$work/install1.log" | tail -n 20; tap_done
fi
ok "the tarball installs into a fresh project"
out=$(cd "$app" && node --input-type=module -e '
  const m = await import("pgcast");
  const c = new m.PgcastClient({ baseUrl: "https://rt.example.com/realtime" }, { location: { href: "https://app.example.com/" } });
  console.log(typeof m.PgcastClient, typeof m.optimistic, m.default === m.PgcastClient, c.wsUrl);
' 2>&1)
is "import 'pgcast' from the installed package" "$out" "function function true wss://rt.example.com/realtime/ws"

# typescript, react, react-test-renderer: from the registry
if (cd "$app" && timeout 300 npm install --silent typescript@5 react@18 @types/react@18 react-test-renderer@18 >"$work/install2.log" 2>&1); then
    cat >"$app/check.ts" <<'TS'
import PgcastDefault, { PgcastClient, optimistic, isGap, STATUS, type PgcastEvent, type Status, type Transport, type Member } from 'pgcast';
import { useRealtimeChannel, useRealtimePresence, useConnection, useOptimisticChannel, PgcastProvider } from 'pgcast/react';

const rt: PgcastClient = new PgcastDefault({ baseUrl: 'https://rt.example.com/realtime', credentials: 'include', transports: ['websocket', 'sse'], token: async () => 'T' });
rt.connect();
const off: () => void = rt.subscribe<{ name: string }>('project:abc', (m) => {
  if (isGap(m)) { const n: number = m.to - m.from; void n; } else { const s: string = m.payload.name; void s; }
}, { events: ['project.updated'], since: 4 });
off();
rt.on('status', (s: Status, t: Transport | null) => { void s; void t; });
const seq: Promise<number> = rt.publish('project:abc', 'project.updated', { name: 'x' });
void seq;
const p = rt.presence('project:abc');
p.join({ color: 'red' });
p.on('change', (members: Member[]) => members.map((m) => m.connectionId));
const todos = optimistic<string[], { title: string }>(rt, 'project:abc', { initial: [], reduce: (list, e: PgcastEvent<{ title: string }>) => [...list, e.payload.title] });
const done: Promise<PgcastEvent<{ title: string }>> = todos.mutate('todo.added', { title: 'milk' });
void done;
const st: 'connected' = STATUS.CONNECTED;
void st;

export function View(): unknown {
  const msgs = useRealtimeChannel<{ n: number }>('project:abc', { limit: 10 });
  const members: Member[] = useRealtimePresence('project:abc', { color: 'red' });
  const { status, transport } = useConnection();
  const [list, mutate] = useOptimisticChannel<string[], { title: string }>('project:abc', { initial: [], reduce: (l, e) => [...l, e.payload.title] });
  void mutate('todo.added', { title: 'x' });
  return [msgs.length, members.length, status, transport, list.length];
}
TS
    cat >"$app/app.tsx" <<'TS'
import { PgcastClient } from 'pgcast';
import { PgcastProvider, useConnectionStatus } from 'pgcast/react';
const rt = new PgcastClient({ baseUrl: '/realtime' });
function Badge() { const s = useConnectionStatus(); return <span>{s}</span>; }
export const App = () => <PgcastProvider client={rt}><Badge /></PgcastProvider>;
TS
    cat >"$app/wrong.ts" <<'TS'
import { PgcastClient } from 'pgcast';
const rt = new PgcastClient({ transports: ['carrier-pigeon'] });
const n: string = await rt.publish('c', 'e', {});
TS
    tsc=(node "$app/node_modules/typescript/bin/tsc" --noEmit --strict --target es2022 --module nodenext --moduleResolution nodenext)
    if out=$(cd "$app" && "${tsc[@]}" check.ts 2>&1); then ok "the declarations type-check a program using the package (tsc --strict)"
    else not_ok "the declarations type-check a program using the package (tsc --strict)"; echo "$out" | head -n 20 | sed 's/^/# /'; fi
    if out=$(cd "$app" && "${tsc[@]}" --jsx react-jsx app.tsx 2>&1); then ok "a React component in TSX uses the provider and a hook (tsc --strict --jsx)"
    else not_ok "a React component in TSX uses the provider and a hook (tsc --strict --jsx)"; echo "$out" | head -n 20 | sed 's/^/# /'; fi
    out=$(cd "$app" && "${tsc[@]}" wrong.ts 2>&1)
    like "and refuse a wrong one (unknown transport, wrong result type)" "$out" "carrier-pigeon.*(.|
)*Type 'number' is not assignable to type 'string'"
    cp "$PGCAST_ROOT/tests/client/fake.mjs" "$app/fake.mjs"
    cat >"$app/hooks.mjs" <<'JS'
// The hooks of pgcast/react under react-test-renderer, with a fake WebSocket.
import React from 'react';
import TestRenderer from 'react-test-renderer';
import { PgcastClient } from 'pgcast';
import { PgcastProvider, useRealtimeChannel, useRealtimePresence, useConnectionStatus, useOptimisticChannel } from 'pgcast/react';
import { fakeEnv, flush } from './fake.mjs';
const { act } = TestRenderer;
globalThis.IS_REACT_ACT_ENVIRONMENT = true;
const env = fakeEnv();
const rt = new PgcastClient({ transports: ['websocket'] }, env);
rt.connect();
await flush();
const ws = env.sockets[0];
let seen = {};
function View() {
  const msgs = useRealtimeChannel('project:a');
  const members = useRealtimePresence('project:a', { color: 'red' });
  const status = useConnectionStatus();
  const [todos, mutate] = useOptimisticChannel('project:a', { initial: [], reduce: (l, e) => (e.type === 'todo' ? [...l, e.payload.t] : l) });
  seen = { msgs: msgs.map((m) => m.seq), members: members.length, status, todos, mutate };
  return null;
}
let r;
await act(async () => { r = TestRenderer.create(React.createElement(PgcastProvider, { client: rt }, React.createElement(View))); });
await act(async () => { ws.open(); });
const out = [];
out.push(seen.status);
out.push(ws.sent.filter((m) => m.type === 'subscribe').length === 1 ? 'one-subscribe' : `subscribes=${ws.sent.filter((m) => m.type === 'subscribe').length}`);
out.push(ws.sent.some((m) => m.type === 'presence.join' && m.payload.color === 'red') ? 'joined' : 'not-joined');
await act(async () => {
  ws.recv({ type: 'subscribed', channel: 'project:a', seq: 0 });
  ws.recv({ type: 'x', channel: 'project:a', seq: 1, payload: {}, timestamp: 0 });
  ws.recv({ type: 'presence.sync', channel: 'project:a', payload: { members: [{ connectionId: 'c1' }, { connectionId: 'c2' }] } });
});
out.push(seen.msgs.join('+'), `members=${seen.members}`);
let pending;
await act(async () => { pending = seen.mutate('todo', { t: 'milk' }); });
out.push(`optimistic=${seen.todos.join('+')}`);
const pub = ws.sent.find((m) => m.type === 'publish');
await act(async () => { ws.recv({ type: 'todo', channel: 'project:a', seq: 2, payload: pub.payload, timestamp: 0 }); });
await pending;
out.push(`confirmed=${seen.todos.join('+')}`);
await act(async () => { r.unmount(); });
out.push(ws.sent.some((m) => m.type === 'unsubscribe') ? 'unsubscribed' : 'still-subscribed');
out.push(ws.sent.some((m) => m.type === 'presence.leave') ? 'left' : 'still-present');
console.log(out.join(' '));
JS
    out=$(cd "$app" && node hooks.mjs 2>&1 | tail -n 3)
    is "the React hooks subscribe, follow presence and status, apply and confirm optimistic changes, clean up" "$out" \
       "connected one-subscribe joined 1 members=2 optimistic=milk confirmed=milk unsubscribed left"
else
    echo "# npm registry unreachable:"; tail -n 5 "$work/install2.log" | sed 's/^/# /'
    skip "the declarations type-check a program using the package (no typescript from the registry)"
    skip "a React component in TSX (no typescript from the registry)"
    skip "and refuse a wrong one"
    skip "the React hooks run (no react from the registry)"
fi
tap_done
