// The fallback path to the API server: @kubernetes/client-node's KubeConfig, loaded with a
// dynamic import() only when the direct path (kube-access.ts) cannot serve the configuration:
// exec or auth-provider credentials, basic auth, impersonation, a proxy, several merged
// kubeconfig files, and the like (kubeconfig.ts lists the reasons). Loading client-node costs
// ~80 MB of RSS (its generated models), which the common configurations never pay.
//
// Requests go over Node's HTTP client as on the direct path (kube-access.ts): client-node's
// applyToHTTPSOptions gives the headers (its authenticators: exec plugins, auth providers,
// impersonation, basic auth) and the TLS material; the connections are ours (one shared pool per
// TLS identity, a connection of its own per watch), except through a proxy, where client-node's
// proxy agent carries every request.
import type { Cluster, KubeConfig, RequestContext } from '@kubernetes/client-node';
import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import type { Agent as HttpAgent } from 'node:http';
import type { RequestOptions } from 'node:https';
import { Connections, USER_AGENT, type KubeAccess, type KubeRequestAccess, type Tls } from './kube-access.ts';
import { NoClusterError } from './kubeconfig.ts';

type ClientNode = typeof import('@kubernetes/client-node');

let loading: Promise<ClientNode> | undefined;

/** @kubernetes/client-node, imported on first use only. */
export function loadClientNode(): Promise<ClientNode> {
  loading ??= import('@kubernetes/client-node');
  return loading;
}

const noop = (): void => undefined;

/** The undici dispatcher client-node's fetch sends with (undici is client-node's, not ours). */
type Dispatcher = NonNullable<ReturnType<RequestContext['getDispatcher']>>;

/**
 * For client-node's own typed API calls (CoreV1Api; tests and benches only): client-node 2.0.1
 * builds a new undici Agent for every request, so every call would open its own TLS connection.
 * This keeps the first one built for a TLS identity and reuses it; new TLS material gets a new
 * one and the old one closes once its requests have finished. Watches and proxied clusters keep
 * the dispatcher client-node made for them.
 */
class ConnectionSharing {
  #shared: { readonly key: string; readonly dispatcher: Dispatcher } | undefined;

  /**
   * The dispatcher for a request, given the one client-node `made` for it. `own`: the request
   * keeps `made` for itself (a watch; no TLS options; a proxy: client-node's behaviour).
   */
  choose(kc: KubeConfig, made: Dispatcher | undefined, watch: boolean): { readonly dispatcher: Dispatcher | undefined; readonly own: boolean } {
    const cluster = kc.getCurrentCluster();
    if (made === undefined || cluster === null || (cluster.proxyUrl ?? '') !== '' || watch) return { dispatcher: made, own: true };
    const key = identity(kc, cluster);
    const shared = this.#shared;
    if (shared !== undefined && shared.key === key) {
      if (made !== shared.dispatcher) void made.close().catch(noop);
      return { dispatcher: shared.dispatcher, own: false };
    }
    this.#shared = { key, dispatcher: made };
    // Rotated credentials: finish the old connections' requests, then close them.
    if (shared !== undefined) void shared.dispatcher.close().catch(noop);
    return { dispatcher: made, own: false };
  }

  async close(): Promise<void> {
    await this.#shared?.dispatcher.close();
  }
}

/** KubeAccess over a client-node KubeConfig (its authenticators, proxies, merged files). */
export class ClientNodeAccess implements KubeAccess {
  readonly server: string;
  readonly #kc: KubeConfig;
  readonly #connections: Connections;

  constructor(kc: KubeConfig) {
    const cluster = kc.getCurrentCluster();
    if (cluster === null) throw new NoClusterError('the kubeconfig has no current cluster');
    this.server = cluster.server.replace(/\/+$/, '');
    this.#kc = kc;
    this.#connections = new Connections(this.server);
  }

  async request(_url: URL, opts: { readonly watch: boolean }): Promise<KubeRequestAccess> {
    const options: RequestOptions = {};
    await this.#kc.applyToHTTPSOptions(options);
    const headers = headersOf(options);
    const cluster = this.#kc.getCurrentCluster();
    if (cluster === null) throw new NoClusterError('the kubeconfig has no current cluster');
    // Through a proxy: client-node's proxy agent (one per cluster and user) carries every request.
    if ((cluster.proxyUrl ?? '') !== '' && typeof options.agent === 'object') return { headers, agent: options.agent as HttpAgent, done: noop };
    return { headers, ...this.#connections.agentFor(identity(this.#kc, cluster), () => tlsOf(options), opts.watch) };
  }

  async close(): Promise<void> {
    this.#connections.close();
  }
}

/** The headers client-node's authenticators set, basic auth as a header, and our User-Agent. */
function headersOf(options: RequestOptions): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(options.headers ?? {})) {
    if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : String(value);
  }
  if (typeof options.auth === 'string' && options.auth !== '') headers['Authorization'] = `Basic ${Buffer.from(options.auth).toString('base64')}`;
  headers['User-Agent'] = USER_AGENT;
  return headers;
}

/** The TLS material client-node read for the current cluster and user. */
function tlsOf(options: RequestOptions): Tls {
  const buffer = (value: unknown): Buffer | undefined => (Buffer.isBuffer(value) ? value : typeof value === 'string' ? Buffer.from(value) : undefined);
  return {
    ca: buffer(options.ca),
    cert: buffer(options.cert),
    key: buffer(options.key),
    pfx: buffer(options.pfx),
    passphrase: options.passphrase,
    rejectUnauthorized: options.rejectUnauthorized,
    servername: options.servername,
  };
}

/** The access of kubeconfig files read by client-node; several are merged as $KUBECONFIG's are. */
export async function clientNodeAccess(source: { readonly files: readonly string[] }): Promise<ClientNodeAccess> {
  const module = await loadClientNode();
  const kc = new module.KubeConfig();
  const [first, ...rest] = source.files;
  if (first === undefined) throw new NoClusterError();
  kc.loadFromFile(first);
  for (const file of rest) {
    const other = new module.KubeConfig();
    other.loadFromFile(file);
    kc.mergeConfig(other);
  }
  return new ClientNodeAccess(kc);
}

/**
 * A client-node KubeConfig whose API calls (CoreV1Api and the like) share one connection pool:
 * for tests and benches that drive the API server through client-node's typed API.
 */
export async function sharedConnectionKubeConfig(): Promise<KubeConfig> {
  const { KubeConfig } = await loadClientNode();
  const sharing = new ConnectionSharing();
  class SharedConnectionKubeConfig extends KubeConfig {
    override async applySecurityAuthentication(context: RequestContext): Promise<void> {
      await super.applySecurityAuthentication(context);
      const { dispatcher } = sharing.choose(this, context.getDispatcher(), isWatch(context.getUrl()));
      if (dispatcher !== undefined) context.setDispatcher(dispatcher);
    }
  }
  return new SharedConnectionKubeConfig();
}

function isWatch(url: string): boolean {
  try {
    return new URL(url).searchParams.get('watch') === 'true';
  } catch {
    return false;
  }
}

/**
 * What the connections depend on: the server and the TLS material. Files count by path, size and
 * modification time (a rotated file gets a new pool) so that each call does not re-read them.
 */
function identity(kc: KubeConfig, cluster: Cluster): string {
  const user = kc.getCurrentUser();
  return JSON.stringify([
    cluster.server,
    cluster.skipTLSVerify,
    cluster.tlsServerName ?? '',
    material(cluster.caFile, cluster.caData),
    material(user?.certFile, user?.certData),
    material(user?.keyFile, user?.keyData),
  ]);
}

function material(file: string | undefined, data: string | undefined): string {
  if (file !== undefined && file !== '') {
    try {
      const { size, mtimeMs } = statSync(file);
      return `${file}:${size}:${mtimeMs}`;
    } catch {
      return `${file}:missing`;
    }
  }
  // Inline data: a digest, so the key stays short.
  return data === undefined || data === '' ? '' : createHash('sha256').update(data).digest('hex');
}
