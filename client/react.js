// pgcast/react — React hooks over a PgcastClient. React (16.8 or later) is a peer
// dependency; the client itself does not need it.
//
//   import { PgcastClient } from 'pgcast';
//   import { PgcastProvider, useRealtimeChannel, useRealtimePresence, useConnectionStatus } from 'pgcast/react';
//   const rt = new PgcastClient({ baseUrl: '/realtime', token: () => getToken() });
//   rt.connect();
//   <PgcastProvider client={rt}><App /></PgcastProvider>
//
// Every hook also takes { client } to use a client without the provider.
import { createContext, createElement, useCallback, useContext, useEffect, useRef, useState } from 'react';
import { optimistic } from './pgcast.js';

export const PgcastContext = createContext(null);

export function PgcastProvider({ client, children }) {
  return createElement(PgcastContext.Provider, { value: client }, children);
}

export function usePgcast(client) {
  const fromContext = useContext(PgcastContext);
  const rt = client || fromContext;
  if (!rt) throw new Error('pgcast/react: no client (wrap the tree in <PgcastProvider client={…}> or pass { client })');
  return rt;
}

// The messages of a channel since the component subscribed (the last `limit` of them).
export function useRealtimeChannel(channel, { events = null, since = null, limit = 1000, client = null } = {}) {
  const rt = usePgcast(client);
  const [messages, setMessages] = useState([]);
  const eventsKey = events ? events.join(',') : '';
  useEffect(() => {
    if (!channel) return undefined;
    setMessages([]);
    return rt.subscribe(channel, (m) => setMessages((old) => {
      const next = old.concat([m]);
      return next.length > limit ? next.slice(next.length - limit) : next;
    }), { events: eventsKey ? eventsKey.split(',') : null, since });
  }, [rt, channel, eventsKey, since, limit]);
  return messages;
}

// Calls fn for every message of the channel (the latest fn: no resubscribe when it changes).
export function useRealtimeEvent(channel, fn, { events = null, since = null, client = null } = {}) {
  const rt = usePgcast(client);
  const ref = useRef(fn);
  ref.current = fn;
  const eventsKey = events ? events.join(',') : '';
  useEffect(() => {
    if (!channel) return undefined;
    return rt.subscribe(channel, (m) => ref.current(m), { events: eventsKey ? eventsKey.split(',') : null, since });
  }, [rt, channel, eventsKey, since]);
}

// The members present in a channel. With `data`, this component is present too (joined
// while mounted, updated when data changes, left on unmount).
export function useRealtimePresence(channel, data, { client = null } = {}) {
  const rt = usePgcast(client);
  const [members, setMembers] = useState([]);
  const json = data === undefined || data === null ? null : JSON.stringify(data);
  const sent = useRef(null);
  useEffect(() => {
    if (!channel) return undefined;
    const p = rt.presence(channel);
    setMembers(p.list());
    return p.on('change', (list) => setMembers(list));
  }, [rt, channel]);
  const present = json !== null;
  useEffect(() => {
    if (!channel || !present) return undefined;
    const p = rt.presence(channel);
    sent.current = json;
    p.join(JSON.parse(json));
    return () => { sent.current = null; p.leave(); };
  }, [rt, channel, present]); // eslint-disable-line react-hooks/exhaustive-deps
  useEffect(() => {
    if (!channel || json === null || sent.current === null || sent.current === json) return;
    sent.current = json;
    rt.presence(channel).update(JSON.parse(json));
  }, [rt, channel, json]);
  return members;
}

// { status, transport, role } of the client, kept current.
export function useConnection({ client = null } = {}) {
  const rt = usePgcast(client);
  const read = () => ({ status: rt.status, transport: rt.transport, role: rt.role });
  const [state, setState] = useState(read);
  useEffect(() => {
    setState(read());
    const offStatus = rt.on('status', () => setState(read()));
    const offRole = rt.on('role', () => setState(read()));
    return () => { offStatus(); offRole(); };
  }, [rt]); // eslint-disable-line react-hooks/exhaustive-deps
  return state;
}

// The status alone: connecting | connected | reconnecting | disconnected | error.
export function useConnectionStatus({ client = null } = {}) {
  return useConnection({ client }).status;
}

// State built from a channel's events by reduce(state, event), with optimistic changes:
// mutate(type, payload) shows the change at once, publishes it with a client id, keeps it
// until the server's event with that id arrives, and rolls it back on error or timeout.
//   const [todos, mutate] = useOptimisticChannel('project:abc', { initial: [], reduce });
export function useOptimisticChannel(channel, { reduce, initial = null, timeoutMs = 15000, since = null, send = null, idKey = 'clientId', client = null } = {}) {
  const rt = usePgcast(client);
  const [state, setState] = useState(initial);
  const store = useRef(null);
  const reduceRef = useRef(reduce);
  reduceRef.current = reduce;
  const sendRef = useRef(send);
  sendRef.current = send;
  useEffect(() => {
    if (!channel) return undefined;
    const s = optimistic(rt, channel, {
      reduce: (a, b) => reduceRef.current(a, b),
      initial,
      timeoutMs,
      since,
      idKey,
      send: sendRef.current ? (ev) => sendRef.current(ev) : null,
    });
    store.current = s;
    setState(s.state);
    const off = s.on('change', (v) => setState(v));
    return () => { off(); s.close(); if (store.current === s) store.current = null; };
  }, [rt, channel, timeoutMs, since, idKey]); // eslint-disable-line react-hooks/exhaustive-deps
  const mutate = useCallback((type, payload, opts) => (store.current
    ? store.current.mutate(type, payload, opts)
    : Promise.reject(new Error('pgcast/react: the channel is not subscribed yet'))), []);
  return [state, mutate];
}
