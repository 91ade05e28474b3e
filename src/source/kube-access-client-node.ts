// The fallback path to the API server: @kubernetes/client-node's KubeConfig, loaded with a
// dynamic import() only when the direct path (kube-access.ts) cannot serve the configuration:
// exec or auth-provider credentials, basic auth, impersonation, a proxy, several merged
// kubeconfig files, and the like (kubeconfig.ts lists the reasons). Loading client-node costs
// ~80 MB of RSS (its generated models), which the common configurations never pay.
//
// client-node 2.0.1 builds a new undici Agent for every request (in applySecurityAuthentication),
// so every call would open its own TLS connection: a few ms of CPU for the handshake and
// certificate loading each time (a fifth of the controller's CPU in a burst went to TLS set-up
// for Event POSTs alone). ConnectionSharing keeps the first Agent built for a TLS identity and
// reuses it; new TLS material (a rotated client certificate file) gets a new Agent and the old one
// closes once its requests have finished. Watches and proxied clusters keep a dispatcher per
// request, closed when the request is done.
import type { Cluster, KubeConfig, RequestContext } from '@kubernetes/client-node';
import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import { Agent, type Dispatcher } from 'undici';
import { KEEPALIVE, USER_AGENT, type KubeAccess, type KubeRequestAccess } from './kube-access.ts';
import { NoClusterError } from './kubeconfig.ts';

type ClientNode = typeof import('@kubernetes/client-node');

let loading: Promise<ClientNode> | undefined;

/** @kubernetes/client-node, imported on first use only. */
export function loadClientNode(): Promise<ClientNode> {
  loading ??= import('@kubernetes/client-node');
  return loading;
}

const noop = (): void => undefined;

/** One dispatcher per TLS identity for the requests that may share a connection. */
export class ConnectionSharing {
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
  readonly #module: ClientNode;
  readonly #kc: KubeConfig;
  readonly #sharing = new ConnectionSharing();
  /** For a cluster without TLS options (client-node makes no dispatcher then). */
  #plain: Agent | undefined;

  constructor(module: ClientNode, kc: KubeConfig) {
    const cluster = kc.getCurrentCluster();
    if (cluster === null) throw new NoClusterError('the kubeconfig has no current cluster');
    this.server = cluster.server.replace(/\/+$/, '');
    this.#module = module;
    this.#kc = kc;
  }

  async request(url: URL, opts: { readonly watch: boolean }): Promise<KubeRequestAccess> {
    const ctx = new this.#module.RequestContext(url.toString(), this.#module.HttpMethod.GET);
    await this.#kc.applySecurityAuthentication(ctx);
    const headers = { ...ctx.getHeaders(), 'User-Agent': USER_AGENT };
    const { dispatcher, own } = this.#sharing.choose(this.#kc, ctx.getDispatcher(), opts.watch);
    if (dispatcher !== undefined) return { headers, dispatcher, done: own ? () => void dispatcher.close().catch(noop) : noop };
    if (opts.watch) {
      const agent = new Agent({ connect: KEEPALIVE, allowH2: false });
      return { headers, dispatcher: agent, done: () => void agent.close().catch(noop) };
    }
    this.#plain ??= new Agent({ connect: KEEPALIVE });
    return { headers, dispatcher: this.#plain, done: noop };
  }

  async close(): Promise<void> {
    await Promise.all([this.#sharing.close(), this.#plain?.close()]);
  }
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
  return new ClientNodeAccess(module, kc);
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
