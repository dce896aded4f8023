// Type declarations of pgcast/react (client/react.js). React is a peer dependency; these
// declarations use its types (@types/react, which React projects in TypeScript have).
import type { Context, ReactElement, ReactNode } from 'react';
import type { ChannelMessage, Member, PgcastClient, PgcastEvent, Role, Status, Transport, OptimisticOptions } from './pgcast.js';

export declare const PgcastContext: Context<PgcastClient | null>;
export declare function PgcastProvider(props: { client: PgcastClient; children?: ReactNode }): ReactElement;
export declare function usePgcast(client?: PgcastClient | null): PgcastClient;

export interface HookOptions {
  client?: PgcastClient | null;
}

export declare function useRealtimeChannel<P = unknown>(
  channel: string | null | undefined,
  options?: HookOptions & { events?: string[] | null; since?: number | null; limit?: number },
): ChannelMessage<P>[];

export declare function useRealtimeEvent<P = unknown>(
  channel: string | null | undefined,
  fn: (msg: ChannelMessage<P>) => void,
  options?: HookOptions & { events?: string[] | null; since?: number | null },
): void;

export declare function useRealtimePresence(
  channel: string | null | undefined,
  data?: Record<string, unknown> | null,
  options?: HookOptions,
): Member[];

export declare function useConnection(options?: HookOptions): { status: Status; transport: Transport | null; role: Role | null };
export declare function useConnectionStatus(options?: HookOptions): Status;

export declare function useOptimisticChannel<S, P = any>(
  channel: string | null | undefined,
  options: HookOptions & OptimisticOptions<S, P>,
): [S, (type: string, payload?: P, options?: { timeoutMs?: number; clientId?: string }) => Promise<PgcastEvent<P>>];
