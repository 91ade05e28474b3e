// A KubeConfig whose API calls share one connection pool.
//
// @kubernetes/client-node 2.0.1 builds a new undici Agent for every request (in
// applySecurityAuthentication), so every call opens its own TLS connection: a few ms of CPU for
// the handshake and certificate loading each time. Profiling the benchmark burst showed a fifth
// of the controller's CPU in TLS set-up for the Event POSTs alone. Here the first Agent built for
// a given TLS identity is kept and reused (undici keeps its connections alive; over HTTP/2 the
// requests share one connection, as client-go does). New TLS material (e.g. a rotated client
// certificate file) gets a new Agent; the old one closes once its requests have finished.
// Watches are left out: each keeps its own connection, as before.
import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import { KubeConfig, type Cluster, type RequestContext } from '@kubernetes/client-node';

type Dispatcher = NonNullable<ReturnType<RequestContext['getDispatcher']>>;

export class SharedConnectionKubeConfig extends KubeConfig {
  #shared: { readonly key: string; readonly dispatcher: Dispatcher } | undefined;

  override async applySecurityAuthentication(context: RequestContext): Promise<void> {
    await super.applySecurityAuthentication(context);
    const made = context.getDispatcher();
    const cluster = this.getCurrentCluster();
    // No TLS options (plain http) or a proxy: keep client-node's behaviour. A watch keeps a
    // connection of its own too: its events must never queue behind other requests' traffic,
    // and it opens one connection per watch (every 5-10 minutes), not per event.
    if (made === undefined || cluster === null || (cluster.proxyUrl ?? '') !== '' || isWatch(context.getUrl())) return;
    const key = this.#identity(cluster);
    const shared = this.#shared;
    if (shared !== undefined && shared.key === key) {
      context.setDispatcher(shared.dispatcher);
      return;
    }
    this.#shared = { key, dispatcher: made };
    // Rotated credentials: finish the old connections' requests, then close them.
    if (shared !== undefined) void shared.dispatcher.close().catch(() => undefined);
  }

  /**
   * What the connections depend on: the server and the TLS material. Files count by path, size and
   * modification time (a rotated file gets a new pool) so that each call does not re-read them.
   */
  #identity(cluster: Cluster): string {
    const user = this.getCurrentUser();
    return JSON.stringify([
      cluster.server,
      cluster.skipTLSVerify,
      cluster.tlsServerName ?? '',
      material(cluster.caFile, cluster.caData),
      material(user?.certFile, user?.certData),
      material(user?.keyFile, user?.keyData),
    ]);
  }
}

function isWatch(url: string): boolean {
  try {
    return new URL(url).searchParams.get('watch') === 'true';
  } catch {
    return false;
  }
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
