// Builds the etcd3 client the registry uses: TLS/auth, deadlines and etcd's require-leader
// metadata on every unary call, gRPC keepalive, and etcd3's own retry/circuit-breaker policies
// switched off (the registry retries with exponential jittered backoff itself; etcd3 retries
// 3 times without any delay, and its per-host breaker would hold calls back for 5 s after etcd
// returns).
import { checkServerIdentity, connect as tlsConnect, type PeerCertificate } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { castGrpcError, Etcd3, EtcdInvalidAuthTokenError, GRPCUnavailableError } from 'etcd3';
import type { IOptions, ITxnResponse } from 'etcd3';
import { CredentialFiles } from './credential-files.ts';
import { decodeTxnResponse, encodeTxnRequest, type TxnAnswer, type TxnRequest } from './txn-wire.ts';

const TXN_METHOD = '/etcdserverpb.KV/Txn';
const passThrough = (encoded: Buffer): Buffer => encoded;

/**
 * etcd3's client, whose transactions for the registry go over etcd3's own connections (its
 * hosts and their breakers, TLS, auth token, default call options) encoded and decoded by
 * txn-wire.ts instead of etcd3's generic protobufjs conversion.
 */
export class RegistryEtcd extends Etcd3 {
  #reauthenticatedTxns = 0;

  /** Transactions that met an expired auth token and went through etcd3's path, which logs in again. */
  get reauthenticatedTxns(): number {
    return this.#reauthenticatedTxns;
  }

  async sendTxn(req: TxnRequest): Promise<TxnAnswer> {
    // Encoded before the call, so that a request the encoder cannot express throws here.
    const encoded = encodeTxnRequest(req);
    const pool = this.pool;
    try {
      return await pool.withConnection('KV', ({ client, metadata }) => {
        // The call options etcd3's own calls get (the deadline and the require-leader
        // interceptor of defaultCallOptions), resolved as etcd3's resolveCallOptions does.
        const factory = pool.callOptionsFactory;
        const options = typeof factory === 'function' ? factory({ service: 'KV', method: 'txn', params: req, isStream: false }) : (factory ?? {});
        return new Promise<TxnAnswer>((resolve, reject) => {
          client.makeUnaryRequest(TXN_METHOD, passThrough, decodeTxnResponse, encoded, metadata, options, (err, answer) => {
            if (err !== null) reject(castGrpcError(err));
            else if (answer === undefined) reject(new Error('etcd answered a transaction with nothing'));
            else resolve(answer);
          });
        });
      });
    } catch (err) {
      // etcd3's own call path logs in again when the auth token expired; this one takes it.
      if (err instanceof EtcdInvalidAuthTokenError) {
        this.#reauthenticatedTxns++;
        return fromEtcd3(await this.kv.txn(req));
      }
      throw err;
    }
  }
}

function fromEtcd3(res: ITxnResponse): TxnAnswer {
  return {
    succeeded: res.succeeded,
    revision: res.header.revision,
    reads: res.succeeded ? [] : res.responses.map((op) => ({ kvs: op.response_range?.kvs ?? [] })),
  };
}

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
  /** How often TLS and password files are re-read (default 10 s); 0 reads them once. */
  readonly credentialRefreshMs?: number | undefined;
  /** Where credential problems and rotations are reported (one sentence, no secrets). */
  readonly report?: ((level: 'info' | 'warn' | 'error', message: string) => void) | undefined;
}

type FaultHandling = NonNullable<IOptions['faultHandling']>;
type PolicyLike = NonNullable<FaultHandling['global']>;

/**
 * A cockatiel-compatible policy that runs the call once. etcd3 only calls `execute` on
 * its policies; cockatiel itself is not a direct dependency of this project.
 */
export function noopPolicy(): PolicyLike {
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

export interface RegistryClient {
  readonly etcd: RegistryEtcd;
  /** The credential files behind TLS and auth, re-read every refresh interval. */
  readonly credentials: CredentialFiles | undefined;
  /** Closes the etcd client and stops re-reading the files. */
  close(): void;
}

/** How often credential files are re-read when the caller does not say. */
export const DEFAULT_CREDENTIAL_REFRESH_MS = 10_000;

export async function createClient(settings: ClientSettings): Promise<RegistryClient> {
  const tls = settings.tls;
  const useTls =
    tls !== undefined || settings.endpoints.some((e) => e.trim().startsWith('https://'));
  const hosts = normaliseEndpoints(settings.endpoints, useTls);
  const options = etcdOptions(hosts, settings.callTimeoutMs, tls?.serverName);
  const credentials = await openCredentials(settings);
  if (settings.auth !== undefined && credentials !== undefined) {
    options.auth = passwordAuth(settings.auth.username, credentials, settings.callTimeoutMs);
  }
  const etcd = new RegistryEtcd(options);
  if (useTls) await useRotatingTls(etcd, credentials, tls?.serverName);
  return {
    etcd,
    credentials,
    close: () => {
      credentials?.stop();
      etcd.close();
    },
  };
}

/**
 * etcd's "require leader" metadata on every unary call: a member that has no leader (an
 * election, a minority partition) answers at once with `etcdserver: no leader` (UNAVAILABLE,
 * retried with backoff, on another member when there is one) instead of holding the request
 * until the deadline and applying it when a leader appears. A write applied seconds after it
 * was planned can be stale; a refused one is retried only if the controller still plans it.
 */
const requireLeader: grpc.Interceptor = (options, nextCall) =>
  new grpc.InterceptingCall(nextCall(options), {
    start(metadata, listener, next) {
      metadata.set('hasleader', 'true');
      next(metadata, listener);
    },
  });

/** etcd3's options: deadlines on unary calls, gRPC keepalive and reconnects, our fault handling. */
function etcdOptions(hosts: string[], callTimeoutMs: number, serverName: string | undefined): IOptions {
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
  if (serverName !== undefined) {
    // Also the SNI name; the verify option in useRotatingTls covers etcd3's login channel,
    // which is created without these channel options.
    grpcOptions['grpc.ssl_target_name_override'] = serverName;
    grpcOptions['grpc.default_authority'] = serverName;
  }
  return {
    hosts,
    dialTimeout: callTimeoutMs,
    grpcOptions,
    defaultCallOptions: (ctx) =>
      ctx.isStream ? {} : { deadline: Date.now() + callTimeoutMs, interceptors: [requireLeader] },
    faultHandling: {
      host: (h) => (hosts.length > 1 ? hostBreaker(h) : noopPolicy()),
      global: noopPolicy(),
    },
  };
}

/** The TLS and password files, read once and then every refresh interval; undefined when none is used. */
async function openCredentials(settings: ClientSettings): Promise<CredentialFiles | undefined> {
  const { tls, auth } = settings;
  if (tls === undefined && auth === undefined) return undefined;
  const credentials = new CredentialFiles({
    caFile: tls?.caFile,
    certFile: tls?.certFile,
    keyFile: tls?.keyFile,
    passwordFile: auth?.passwordFile,
    refreshMs: settings.credentialRefreshMs ?? DEFAULT_CREDENTIAL_REFRESH_MS,
    report: settings.report,
  });
  await credentials.start();
  const problem = credentials.problem;
  if (problem !== undefined) {
    credentials.stop();
    throw new Error(`registry: ${problem}`);
  }
  return credentials;
}

function passwordAuth(username: string, files: CredentialFiles, callTimeoutMs: number): NonNullable<IOptions['auth']> {
  return {
    username,
    // A getter: etcd3 reads it at every login, so a rotated password file takes effect.
    get password(): string {
      return files.password;
    },
    // A factory, so that later token refreshes get a fresh deadline too.
    callOptions: () => ({ deadline: Date.now() + callTimeoutMs }),
  };
}

/** Every connection of `etcd` uses the credential files as they are now (system roots without them). */
async function useRotatingTls(etcd: Etcd3, credentials: CredentialFiles | undefined, serverName: string | undefined): Promise<void> {
  const provider = credentials ?? new CredentialFiles({ refreshMs: 0 });
  if (credentials === undefined) await provider.start();
  installChannelCredentials(
    etcd,
    grpc.experimental.createCertificateProviderChannelCredentials(
      provider,
      provider.hasIdentity ? provider : null,
      serverName === undefined ? {} : { checkServerIdentity: (_host, cert) => checkServerIdentity(serverName, cert) },
    ),
  );
}

interface PoolInternals {
  hosts: Array<{ channelCredentials: unknown }>;
  authenticator: { credentials: unknown };
}

/**
 * etcd3 builds fixed TLS credentials from buffers once (grpc createSsl), which would pin the
 * certificates read at start. Its hosts create their gRPC clients lazily from
 * `channelCredentials`, and its authenticator logs in with `credentials`; replacing both before
 * the first call makes every connection use the rotating provider. Checked loudly, because
 * these are etcd3 internals (the version is pinned and the TLS tests cover this path).
 */
function installChannelCredentials(etcd: Etcd3, channelCredentials: grpc.ChannelCredentials): void {
  const pool = (etcd as unknown as { pool?: Partial<PoolInternals> }).pool;
  const hostsOk = Array.isArray(pool?.hosts) && pool.hosts.every((h) => 'channelCredentials' in h);
  if (pool === undefined || !hostsOk || pool.authenticator === undefined || !('credentials' in pool.authenticator)) {
    throw new Error('registry: this etcd3 version does not expose its connection pool as expected; cannot use rotating TLS credentials');
  }
  for (const host of pool.hosts ?? []) host.channelCredentials = channelCredentials;
  pool.authenticator.credentials = channelCredentials;
}

/**
 * gRPC reports a failed TLS handshake as "No connection established. Last error: null",
 * which names neither the cause nor the flag to fix. When a connection with TLS fails, one
 * plain TLS handshake with the same files finds the reason (unknown CA, name mismatch,
 * certificate refused by etcd) and it is added to the error.
 */
export async function explainConnectionError(err: unknown, client: RegistryClient, endpoints: readonly string[], serverName: string | undefined, timeoutMs = 2_000): Promise<unknown> {
  const files = client.credentials;
  if (!(err instanceof GRPCUnavailableError) || files === undefined || !files.usesTls) return err;
  const first = endpoints[0];
  if (first === undefined) return err;
  const url = new URL(normaliseEndpoints([first], true)[0] ?? first);
  const reason = await tlsHandshakeProblem(url.hostname.replace(/^\[|\]$/g, ''), Number(url.port || 2379), files, serverName, timeoutMs);
  if (reason === undefined) return err;
  return new Error(`cannot connect to etcd at ${url.host} over TLS: ${reason}`, { cause: err });
}

function tlsHandshakeProblem(host: string, port: number, files: CredentialFiles, serverName: string | undefined, timeoutMs: number): Promise<string | undefined> {
  const { ca, cert, key } = files.tlsMaterial();
  return new Promise((resolve) => {
    const socket = tlsConnect({
      host,
      port,
      ...(ca !== undefined ? { ca } : {}),
      ...(cert !== undefined && key !== undefined ? { cert, key } : {}),
      ALPNProtocols: ['h2'],
      ...(serverName !== undefined ? { servername: serverName, checkServerIdentity: (_h: string, c: PeerCertificate) => checkServerIdentity(serverName, c) } : {}),
    });
    const done = (reason: string | undefined): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(reason);
    };
    const timer = setTimeout(() => done(undefined), timeoutMs);
    const hint = (message: string): string => {
      // OpenSSL's alert text is buried in a long line: "...:tlsv1 alert unknown ca:...".
      const alert = /alert ([a-z ]+?)(?::|$)/i.exec(message)?.[1];
      if (alert !== undefined) return `etcd refused the client certificate (TLS alert "${alert}"); check --etcd-cert-file and --etcd-key-file`;
      if (/self.signed|unable to verify|unable to get local issuer|certificate chain/i.test(message)) {
        return `the etcd server certificate is not signed by the CA in --etcd-ca-file (${message.split(';')[0]})`;
      }
      if (/altname|hostname|does not match/i.test(message)) return `the etcd server certificate does not name this host (${message}); see --etcd-server-name`;
      return message;
    };
    socket.once('error', (e: Error) => done(hint(e.message)));
    // TLS 1.3 reports a refused client certificate only after the handshake, on first read.
    socket.once('secureConnect', () => {
      socket.write(Buffer.alloc(0));
      setTimeout(() => done(undefined), Math.min(500, timeoutMs));
    });
  });
}
