// How the controller reaches the API server: its base URL, and per request the headers
// (Authorization) and the undici dispatcher to send it with. Lists and Event POSTs share one
// connection pool per TLS identity (over HTTP/2 one connection, as client-go does); new TLS
// material (a rotated certificate file) gets a new pool and the old one closes once its
// requests have finished. A watch gets a connection of its own, closed when it ends: its events
// never queue behind other traffic, and it opens one connection per watch, not per event.
//
// DirectAccess, here, is the controller's own path: a kubeconfig's server, CA and TLS options
// with a bearer token (inline or a file) or a client certificate, or in-cluster. It never loads
// @kubernetes/client-node, whose generated models cost ~80 MB of RSS at start (issue 15).
// Anything else is handled by client-node, loaded only then (kube-access-client-node.ts);
// kube-access-resolve.ts picks one.
import { readFileSync, statSync } from 'node:fs';
import { Agent, type Dispatcher } from 'undici';
import type { DirectConfig, Material } from './kubeconfig.ts';

/** What one request is sent with. */
export interface KubeRequestAccess {
  readonly headers: Readonly<Record<string, string>>;
  readonly dispatcher: Dispatcher;
  /** The request is over (its body read, failed or aborted): a watch's own connection closes. */
  done(): void;
}

export interface KubeAccess {
  /** The API server's base URL, without a trailing slash. */
  readonly server: string;
  /** Credentials and dispatcher for a request to `url`; `watch`: a connection of its own. */
  request(url: URL, opts: { readonly watch: boolean }): Promise<KubeRequestAccess>;
  /** Closes the shared connections once their requests are done. */
  close(): Promise<void>;
}

export const USER_AGENT = 'etcd-registrar';

/**
 * A token file is re-read when the value in hand is older than this: bound service-account
 * tokens rotate (the kubelet refreshes them well before expiry). client-go does the same.
 */
export const TOKEN_FILE_TTL_MS = 60_000;

/**
 * TCP keep-alive probes after 30 s idle rather than undici's 60 s, which can race cloud load
 * balancers' idle timeouts (the value client-go and client-node use).
 */
export const KEEPALIVE = { keepAlive: true, keepAliveInitialDelay: 30_000 } as const;

type Tls = { ca?: Buffer; cert?: Buffer; key?: Buffer; rejectUnauthorized?: boolean; servername?: string };

/** A connection pool and the TLS material (by file identity) it was built from. */
interface Pool {
  readonly key: string;
  readonly connect: Tls & typeof KEEPALIVE;
  readonly agent: Agent;
}

const noop = (): void => undefined;

/** The direct path: a DirectConfig (kubeconfig.ts) over undici, without client-node. */
export class DirectAccess implements KubeAccess {
  readonly server: string;
  readonly #config: DirectConfig;
  readonly #now: () => number;
  /** The bearer token and when its file was last read. */
  #token: { value: string | undefined; readAt: number };
  #headers: Readonly<Record<string, string>>;
  /** The shared pool and the TLS material it was built from. */
  #pool: Pool;

  /** Reads the token and TLS files at once: a missing file is an error at start, not per request. */
  constructor(config: DirectConfig, opts: { readonly now?: (() => number) | undefined } = {}) {
    this.server = config.server;
    this.#config = config;
    this.#now = opts.now ?? Date.now;
    this.#token = { value: config.token, readAt: -Infinity };
    if (config.tokenFile !== undefined) this.#token = { value: readToken(config.tokenFile), readAt: this.#now() };
    this.#headers = headersFor(this.#token.value);
    this.#pool = this.#build(this.#identity());
  }

  async request(_url: URL, opts: { readonly watch: boolean }): Promise<KubeRequestAccess> {
    const headers = this.#currentHeaders();
    const pool = this.#currentPool();
    if (!opts.watch) return { headers, dispatcher: pool.agent, done: noop };
    // HTTP/1.1 on a connection of its own (kube-http.ts explains why watches avoid HTTP/2).
    const own = new Agent({ connect: pool.connect, allowH2: false });
    return { headers, dispatcher: own, done: () => void own.close().catch(noop) };
  }

  async close(): Promise<void> {
    await this.#pool.agent.close();
  }

  /** The headers with the token in hand, re-reading its file once a minute. */
  #currentHeaders(): Readonly<Record<string, string>> {
    const file = this.#config.tokenFile;
    const now = this.#now();
    if (file !== undefined && now - this.#token.readAt > TOKEN_FILE_TTL_MS) {
      let value: string | undefined;
      try {
        value = readToken(file);
      } catch (err) {
        // Mid-rotation or gone: the last value read stays (client-go's behaviour) if there is one.
        if (this.#token.value === undefined) throw err;
        value = this.#token.value;
      }
      if (value !== this.#token.value) this.#headers = headersFor(value);
      this.#token = { value, readAt: now };
    }
    return this.#headers;
  }

  /** The shared pool for the TLS material in place now; a new one when a file changed. */
  #currentPool(): Pool {
    const key = this.#identity();
    const pool = this.#pool;
    if (key === pool.key) return pool;
    this.#pool = this.#build(key);
    // Finish the old connections' requests, then close them.
    void pool.agent.close().catch(noop);
    return this.#pool;
  }

  #build(key: string): Pool {
    const c = this.#config;
    const connect: Tls & typeof KEEPALIVE = { ...KEEPALIVE };
    const ca = read(c.ca);
    const cert = read(c.cert);
    const key_ = read(c.key);
    if (ca !== undefined) connect.ca = ca;
    if (cert !== undefined) connect.cert = cert;
    if (key_ !== undefined) connect.key = key_;
    // Only when asked: otherwise NODE_TLS_REJECT_UNAUTHORIZED decides, as with client-node.
    if (c.insecureSkipTlsVerify) connect.rejectUnauthorized = false;
    if (c.tlsServerName !== undefined) connect.servername = c.tlsServerName;
    return { key, connect, agent: new Agent({ connect }) };
  }

  /** The files the TLS material comes from, by size and modification time (not re-read per request). */
  #identity(): string {
    const c = this.#config;
    return `${stamp(c.ca)}|${stamp(c.cert)}|${stamp(c.key)}`;
  }
}

function headersFor(token: string | undefined): Readonly<Record<string, string>> {
  return token === undefined || token === '' ? { 'User-Agent': USER_AGENT } : { Authorization: `Bearer ${token}`, 'User-Agent': USER_AGENT };
}

/** A token file's value; surrounding whitespace (the trailing newline) is not part of it. */
function readToken(file: string): string {
  return readFileSync(file, 'utf8').trim();
}

function read(material: Material | undefined): Buffer | undefined {
  if (material === undefined) return undefined;
  return 'file' in material ? readFileSync(material.file) : material.data;
}

function stamp(material: Material | undefined): string {
  if (material === undefined || !('file' in material)) return '';
  try {
    const { size, mtimeMs, ino } = statSync(material.file);
    return `${size}:${mtimeMs}:${ino}`;
  } catch {
    return 'missing';
  }
}
