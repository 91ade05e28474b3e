// Builds the etcd3 client the registry uses: TLS/auth, deadlines on every unary call, gRPC
// keepalive, and etcd3's own retry/circuit-breaker policies switched off (the registry
// retries with exponential jittered backoff itself; etcd3 retries 3 times without any
// delay, and its per-host breaker would hold calls back for 5 s after etcd returns).
import { readFile } from 'node:fs/promises';
import { Etcd3, GRPCUnavailableError } from 'etcd3';
import type { IOptions } from 'etcd3';

export interface TlsOptions {
  /** CA bundle that verifies the server certificate (system roots when absent). */
  readonly caFile?: string | undefined;
  /** Client certificate and key for mTLS (both or neither). */
  readonly certFile?: string | undefined;
  readonly keyFile?: string | undefined;
  /** Name to verify in the server certificate instead of the endpoint host. */
  readonly serverName?: string | undefined;
}

export interface AuthOptions {
  readonly username: string;
  /** File holding the password (trailing newline ignored); never logged. */
  readonly passwordFile: string;
}

export interface ClientSettings {
  readonly endpoints: readonly string[];
  readonly callTimeoutMs: number;
  readonly tls?: TlsOptions | undefined;
  readonly auth?: AuthOptions | undefined;
}

type FaultHandling = NonNullable<IOptions['faultHandling']>;
type PolicyLike = NonNullable<FaultHandling['global']>;

/**
 * A cockatiel-compatible policy that runs the call once. etcd3 only calls `execute` on
 * its policies; cockatiel itself is not a direct dependency of this project.
 */
function noopPolicy(): PolicyLike {
  const never = { dispose() {} };
  const policy = {
    onSuccess: () => never,
    onFailure: () => never,
    execute: <T>(fn: (ctx: { signal: AbortSignal }) => PromiseLike<T> | T, signal?: AbortSignal): Promise<T> =>
      Promise.resolve().then(() => fn({ signal: signal ?? new AbortController().signal })),
  };
  return policy as unknown as PolicyLike;
}

/**
 * With several endpoints: after 2 consecutive connection failures a host is skipped for 1 s
 * (etcd3 then tries the next host within the same call). etcd3's default breaker waits 5 s
 * and also applies to a lone endpoint, which would only delay recovery when etcd returns.
 */
function hostBreaker(host: string): PolicyLike {
  let failures = 0;
  let openUntil = 0;
  const never = { dispose() {} };
  const policy = {
    onSuccess: () => never,
    onFailure: () => never,
    execute: async <T>(fn: (ctx: { signal: AbortSignal }) => PromiseLike<T> | T, signal?: AbortSignal): Promise<T> => {
      if (Date.now() < openUntil) throw new GRPCUnavailableError(`etcd endpoint ${host} skipped after repeated failures`);
      try {
        const out = await fn({ signal: signal ?? new AbortController().signal });
        failures = 0;
        return out;
      } catch (err) {
        // Only transport failures (refused, dropped) say the host is bad; a deadline or an
        // etcdserver error also happens on healthy members during a leader election.
        if (err instanceof GRPCUnavailableError && !err.message.includes('etcdserver:') && ++failures >= 2) {
          failures = 0;
          openUntil = Date.now() + 1_000;
        }
        throw err;
      }
    },
  };
  return policy as unknown as PolicyLike;
}

/** Endpoint URLs as etcd3 wants them; all https or all http (etcd3 rejects a mix). */
export function normaliseEndpoints(endpoints: readonly string[], tls: boolean): string[] {
  if (endpoints.length === 0) throw new Error('registry: at least one etcd endpoint is required');
  return endpoints.map((e) => {
    const trimmed = e.trim();
    if (/^https?:\/\//.test(trimmed)) return trimmed;
    return `${tls ? 'https' : 'http'}://${trimmed}`;
  });
}

export async function createClient(settings: ClientSettings): Promise<Etcd3> {
  const tls = settings.tls;
  const useTls =
    tls !== undefined || settings.endpoints.some((e) => e.trim().startsWith('https://'));
  const hosts = normaliseEndpoints(settings.endpoints, useTls);
  const grpcOptions: Record<string, string | number> = {
    // Detect a dead peer on idle channels; etcd's minimum ping interval is 5 s.
    'grpc.keepalive_time_ms': 10_000,
    'grpc.keepalive_timeout_ms': 5_000,
    'grpc.keepalive_permit_without_calls': 1,
    // Reconnect quickly after etcd comes back (defaults back off up to 120 s).
    'grpc.initial_reconnect_backoff_ms': 100,
    'grpc.max_reconnect_backoff_ms': 2_000,
    'grpc.max_receive_message_length': 64 * 1024 * 1024,
  };
  const options: IOptions = {
    hosts,
    dialTimeout: settings.callTimeoutMs,
    grpcOptions,
    defaultCallOptions: (ctx) =>
      ctx.isStream ? {} : { deadline: Date.now() + settings.callTimeoutMs },
    faultHandling: {
      host: (h) => (hosts.length > 1 ? hostBreaker(h) : noopPolicy()),
      global: noopPolicy(),
    },
  };
  if (tls !== undefined) {
    if ((tls.certFile === undefined) !== (tls.keyFile === undefined)) {
      throw new Error('registry: TLS client certificate and key must be given together');
    }
    const rootCertificate = tls.caFile !== undefined ? await readFile(tls.caFile) : undefined;
    const certChain = tls.certFile !== undefined ? await readFile(tls.certFile) : undefined;
    const privateKey = tls.keyFile !== undefined ? await readFile(tls.keyFile) : undefined;
    // etcd3 passes these to grpc.credentials.createSsl; a null root means system roots.
    options.credentials = {
      rootCertificate: rootCertificate ?? (null as unknown as Buffer),
      ...(certChain !== undefined ? { certChain } : {}),
      ...(privateKey !== undefined ? { privateKey } : {}),
    };
    if (tls.serverName !== undefined) {
      grpcOptions['grpc.ssl_target_name_override'] = tls.serverName;
      grpcOptions['grpc.default_authority'] = tls.serverName;
    }
  }
  if (settings.auth !== undefined) {
    const password = (await readFile(settings.auth.passwordFile, 'utf8')).replace(/\r?\n$/, '');
    options.auth = {
      username: settings.auth.username,
      password,
      // A factory, so that later token refreshes get a fresh deadline too.
      callOptions: () => ({ deadline: Date.now() + settings.callTimeoutMs }),
    };
  }
  return new Etcd3(options);
}
