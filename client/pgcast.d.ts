// Type declarations of pgcast (client/pgcast.js).

export declare const VERSION: string;

export type Transport = 'websocket' | 'sse' | 'poll';
export type Status = 'connecting' | 'connected' | 'reconnecting' | 'disconnected' | 'error';
export type Role = 'solo' | 'leader' | 'follower';

export interface ReconnectOptions {
  initialDelayMs?: number;
  multiplier?: number;
  maxDelayMs?: number;
  maxAttempts?: number;
}

export interface PgcastOptions {
  /** Where the deployment's HTTP endpoints are: '/realtime' or 'https://rt.example.com/realtime'. */
  baseUrl?: string;
  /** The WebSocket URL; default ws(s)://{baseUrl's host}{baseUrl's path}/ws. */
  wsUrl?: string | null;
  /** A token, or a function returning one (or a Promise of one), called for every connection. */
  token?: string | null | (() => string | null | Promise<string | null>);
  /** fetch credentials mode; 'include' sends cookies to another origin (and EventSource withCredentials). */
  credentials?: 'same-origin' | 'include' | 'omit';
  /** Transports allowed, best first. */
  transports?: Transport[];
  reconnect?: ReconnectOptions;
  /** A WebSocket endpoint that is not one (404/400) is tried again only after this long. */
  wsUnavailableRetryMs?: number;
  /** A WebSocket not open after this long gets a fallback meanwhile. */
  wsOpenTimeoutMs?: number;
  /** With a token function: renew the WebSocket's token in-band this long before its exp. */
  renewBeforeMs?: number;
  queueLimit?: number;
  pingIntervalMs?: number;
  pollSilenceMs?: number;
  pollWaitSeconds?: number;
  /** An SSE stream without any message this long after it was opened is held back by the server: long-poll instead (45000). */
  sseSilenceMs?: number;
  /** ...and try SSE again after this long (600000). */
  sseSilenceRetryMs?: number;
  presenceHeartbeatMs?: number;
  terminalEvents?: string[];
  /** Share one connection between the tabs of this origin with the same token (default true). */
  share?: boolean;
  shareHeartbeatMs?: number;
  shareTimeoutMs?: number;
}

export declare const DEFAULTS: Readonly<Required<Omit<PgcastOptions, 'reconnect'>> & { reconnect: Readonly<Required<ReconnectOptions>> }>;

export declare const STATUS: Readonly<{
  CONNECTING: 'connecting';
  CONNECTED: 'connected';
  RECONNECTING: 'reconnecting';
  DISCONNECTED: 'disconnected';
  ERROR: 'error';
}>;

/** An event as every transport delivers it. */
export interface PgcastEvent<P = unknown> {
  type: string;
  channel: string;
  seq: number;
  payload: P;
  timestamp: number;
}

/** Events no longer retained between two positions. */
export interface GapMessage {
  type: 'gap';
  channel: string;
  from: number;
  to: number;
}

export type ChannelMessage<P = unknown> = PgcastEvent<P> | GapMessage;

/** Tells a gap message from an event. */
export declare function isGap(msg: ChannelMessage<any>): msg is GapMessage;

export interface Member {
  userId: string;
  name?: string;
  connectionId: string;
  joinedAt?: string | number;
  lastSeen?: string | number;
  [key: string]: unknown;
}

export interface PgcastError extends Error {
  code?: string;
  status?: number;
}

export interface SubscribeOptions {
  /** Only these event types reach this handler (gaps always do). */
  events?: string[] | null;
  /** Resume after this position (e.g. from realtime.cursor rendered into the page). */
  since?: number | null;
}

declare class Emitter<Events extends Record<string, (...args: any[]) => void>> {
  on<K extends keyof Events & string>(name: K, fn: Events[K]): () => void;
  off<K extends keyof Events & string>(name: K, fn: Events[K]): void;
  emit<K extends keyof Events & string>(name: K, ...args: Parameters<Events[K]>): void;
}

export interface PresenceEvents {
  change: (members: Member[]) => void;
  [name: string]: (...args: any[]) => void;
}

export declare class Presence extends Emitter<PresenceEvents> {
  readonly channel: string;
  readonly joined: Record<string, unknown> | null;
  members: Map<string, Member>;
  list(): Member[];
  join(data?: Record<string, unknown>): void;
  update(data?: Record<string, unknown>): void;
  leave(): void;
}

export interface ClientEvents {
  status: (status: Status, transport: Transport | null) => void;
  connected: (msg: { type: 'connected'; connectionId: string; tenant?: string; heartbeatIntervalMs?: number }) => void;
  error: (err: PgcastError) => void;
  role: (role: Role) => void;
  terminal: (event: PgcastEvent) => void;
  'queue-full': (msg: object) => void;
  'websocket-gave-up': () => void;
  [name: string]: (...args: any[]) => void;
}

export declare class PgcastClient extends Emitter<ClientEvents> {
  constructor(options?: PgcastOptions, env?: object);
  readonly opts: Required<PgcastOptions>;
  /** What delivers now; with 'connected', `transport` names it. */
  status: Status;
  transport: Transport | null;
  /** solo: a connection of its own; leader: holds the connection of this browser's tabs; follower: uses the leader's. */
  role: Role | null;
  connectionId: string | null;
  readonly wsUrl: string;
  readonly queue: object[];
  connect(): this;
  disconnect(): void;
  subscribe<P = unknown>(channel: string, fn: (msg: ChannelMessage<P>) => void, options?: SubscribeOptions): () => void;
  /** Resolves with the event's seq. */
  publish(channel: string, event: string, payload?: unknown): Promise<number>;
  /** A raw protocol message over the WebSocket (queued while it connects). */
  send(msg: object): boolean;
  presence(channel: string): Presence;
}

export interface OptimisticOptions<S, P = any> {
  reduce: (state: S, event: PgcastEvent<P> & { optimistic?: boolean }) => S;
  initial?: S;
  /** Without the server's event after this long the change is rolled back. */
  timeoutMs?: number;
  /** The payload key carrying the client id (default 'clientId'). */
  idKey?: string;
  since?: number | null;
  events?: string[] | null;
  /** How a change reaches the server (default: client.publish on the channel). */
  send?: ((event: PgcastEvent<P> & { optimistic: true }) => unknown) | null;
}

export interface OptimisticEvents<S> {
  change: (state: S) => void;
  rollback: (info: { clientId: string; event: PgcastEvent; error: PgcastError }) => void;
  gap: (gap: GapMessage) => void;
  [name: string]: (...args: any[]) => void;
}

export declare class Optimistic<S = unknown, P = any> extends Emitter<OptimisticEvents<S>> {
  constructor(client: PgcastClient, channel: string, options: OptimisticOptions<S, P>);
  readonly channel: string;
  /** Confirmed state with the pending changes applied. */
  state: S;
  /** State from the server's events only. */
  confirmed: S;
  pending: Map<string, { event: PgcastEvent<P> }>;
  mutate(type: string, payload?: P, options?: { send?: OptimisticOptions<S, P>['send']; timeoutMs?: number; clientId?: string }): Promise<PgcastEvent<P>>;
  close(): void;
}

export declare function optimistic<S, P = any>(client: PgcastClient, channel: string, options: OptimisticOptions<S, P>): Optimistic<S, P>;

export declare function backoffDelay(attempt: number, opts?: ReconnectOptions): number;
/** A response's Retry-After (seconds) in milliseconds, 0 without one. */
export declare function retryAfterMs(res: { headers?: { get(name: string): string | null } } | null | undefined): number;
export declare function parseCursor(text: string | null | undefined): Map<string, number>;
export declare function formatCursor(entries: Iterable<[string, number | null | undefined]>): string;

/** The connection one client (or the leader tab) holds; most code uses PgcastClient. */
export declare class Connection {
  constructor(options: PgcastOptions, env: object);
  status: Status;
  transport: Transport | null;
  wsUrl(): string;
}

export default PgcastClient;
