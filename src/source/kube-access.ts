// How the controller reaches the API server: its base URL, and per request the headers
// (Authorization) and the node:http(s) Agent to send it with. Lists and Event POSTs share one
// keep-alive pool per TLS identity; new TLS material (a rotated certificate file) gets a new pool
// and the old one closes each connection once its request has finished. A watch gets a
// connection of its own, closed when it ends: its events never queue behind other traffic, and
// it opens one connection per watch, not per event. Everything is HTTP/1.1 on Node's own client
// (native llhttp): undici, measured, kept ~16 MB more resident after its first requests (its
// WebAssembly parser), a fifth of the controller's RSS at 100 pods (issue 15).
//
// DirectAccess, here, is the controller's own path: a kubeconfig's server, CA and TLS options
// with a bearer token (inline or a file) or a client certificate, or in-cluster. It never loads
// @kubernetes/client-node, whose generated models cost ~80 MB of RSS at start (issue 15).
// Anything else is handled by client-node, loaded only then (kube-access-client-node.ts);
// kube-access-resolve.ts picks one.
import { readFileSync, statSync } from 'node:fs';
import type { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { http } from '../node-http.ts';
import type { DirectConfig, Material } from './kubeconfig.ts';

/** What one request is sent with. */
export interface KubeRequestAccess {
  readonly headers: Readonly<Record<string, string>>;
  /** The connections to send it over (an https.Agent carries the TLS options). */
  readonly agent: HttpAgent;
  /** The request is over (its body read, failed or aborted): a watch's own connection closes. */
  done(): void;
}

export interface KubeAccess {
  /** The API server's base URL, without a trailing slash. */
  readonly server: string;
  /** Credentials and agent for a request to `url`; `watch`: a connection of its own. */
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

/** The TLS options a connection is made with. */
export interface Tls {
  ca?: Buffer | undefined;
  cert?: Buffer | undefined;
  key?: Buffer | undefined;
  pfx?: Buffer | undefined;
  passphrase?: string | undefined;
  rejectUnauthorized?: boolean | undefined;
  servername?: string | undefined;
}

/**
 * Connections are kept open between requests, with TCP keep-alive probes after 30 s idle (the
 * value client-go and client-node use). An idle pooled connection is closed after 30 s, before
 * common load balancers' idle timeouts (60 s and more) can close it under a request.
 */
const KEEP_ALIVE = { keepAlive: true, keepAliveMsecs: 30_000 } as const;
const IDLE_CLOSE_MS = 30_000;

const noop = (): void => undefined;

/**
 * Closes an agent's idle connections now and the others as their requests finish: with no room
 * for free connections, the agent destroys each one it would otherwise keep.
 */
function retire(agent: HttpAgent): void {
  agent.maxFreeSockets = 0;
  for (const sockets of Object.values(agent.freeSockets)) for (const socket of sockets ?? []) socket.destroy();
}

/**
 * The agents of one API server: a shared keep-alive pool for the TLS material in place, replaced
 * when that changes, and a connection of its own per watch, made with the same material.
 */
export class Connections {
  readonly #secure: boolean;
  #shared: { readonly key: string; readonly tls: Tls; readonly agent: HttpAgent } | undefined;

  /** `server`: an http:// server gets plain connections (TLS options are then unused). */
  constructor(server: string) {
    this.#secure = !server.toLowerCase().startsWith('http:');
  }

  /**
   * The agent of one request and what ends it. `key` identifies the TLS material (e.g. its files'
   * size and modification time); `tls()` reads it, only when the key is new. `watch`: a
   * connection of its own, closed by `done`.
   */
  agentFor(key: string, tls: () => Tls, watch: boolean): { readonly agent: HttpAgent; readonly done: () => void } {
    let shared = this.#shared;
    if (shared === undefined || shared.key !== key) {
      const material = tls();
      const previous = shared;
      shared = this.#shared = { key, tls: material, agent: this.#agent(material, true) };
      // Rotated credentials: the old pool's requests finish on their connections, then they close.
      if (previous !== undefined) retire(previous.agent);
    }
    if (!watch) return { agent: shared.agent, done: noop };
    const own = this.#agent(shared.tls, false);
    return { agent: own, done: () => own.destroy() };
  }

  close(): void {
    if (this.#shared !== undefined) retire(this.#shared.agent);
  }

  #agent(tls: Tls, pooled: boolean): HttpAgent {
    // Without `timeout` a connection of its own is never closed for silence here: the watch's
    // own inactivity timer decides.
    const options = pooled ? { ...KEEP_ALIVE, timeout: IDLE_CLOSE_MS } : { ...KEEP_ALIVE, maxSockets: 1 };
    if (!this.#secure) return new http.Agent(options);
    const defined = Object.fromEntries(Object.entries(tls).filter(([, v]) => v !== undefined));
    return new HttpsAgent({ ...options, ...defined });
  }
}

/** The direct path: a DirectConfig (kubeconfig.ts) over Node's HTTP client, without client-node. */
export class DirectAccess implements KubeAccess {
  readonly server: string;
  readonly #config: DirectConfig;
  readonly #now: () => number;
  /** The bearer token and when its file was last read. */
  #token: { value: string | undefined; readAt: number };
  #headers: Readonly<Record<string, string>>;
  readonly #connections: Connections;

  /** Reads the token and TLS files at once: a missing file is an error at start, not per request. */
  constructor(config: DirectConfig, opts: { readonly now?: (() => number) | undefined } = {}) {
    this.server = config.server;
    this.#config = config;
    this.#now = opts.now ?? Date.now;
    this.#token = { value: config.token, readAt: -Infinity };
    if (config.tokenFile !== undefined) this.#token = { value: readToken(config.tokenFile), readAt: this.#now() };
    this.#headers = headersFor(this.#token.value);
    this.#connections = new Connections(config.server);
    this.#connections.agentFor(this.#identity(), () => this.#readTls(), false);
  }

  async request(_url: URL, opts: { readonly watch: boolean }): Promise<KubeRequestAccess> {
    const headers = this.#currentHeaders();
    return { headers, ...this.#connections.agentFor(this.#identity(), () => this.#readTls(), opts.watch) };
  }

  async close(): Promise<void> {
    this.#connections.close();
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

  #readTls(): Tls {
    const c = this.#config;
    return {
      ca: read(c.ca),
      cert: read(c.cert),
      key: read(c.key),
      // Only when asked: otherwise NODE_TLS_REJECT_UNAUTHORIZED decides, as with client-node.
      rejectUnauthorized: c.insecureSkipTlsVerify ? false : undefined,
      servername: c.tlsServerName,
    };
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
