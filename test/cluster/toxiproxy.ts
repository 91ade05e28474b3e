// A real Toxiproxy (built from the Go module proxy, cached like the control plane) on
// loopback, and a small client for its HTTP API: TCP proxies whose links can be cut, slowed,
// throttled or reset. The fault suite puts one between the controller and the registry etcd
// and one between the controller and the kube-apiserver (TLS passes through as plain TCP).
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, ownDir, spawnManaged, waitFor, type ManagedProcess } from './process.ts';
import { ensureTools, toolPath } from './tools.ts';

export type Stream = 'upstream' | 'downstream';

/** The toxics the fault suite uses (attributes as Toxiproxy names them; times in ms, rate in KB/s). */
export type Toxic =
  | { readonly type: 'timeout'; readonly attributes: { readonly timeout: number } }
  | { readonly type: 'latency'; readonly attributes: { readonly latency: number; readonly jitter: number } }
  | { readonly type: 'bandwidth'; readonly attributes: { readonly rate: number } }
  | { readonly type: 'reset_peer'; readonly attributes: { readonly timeout: number } };

export interface ProxyInfo {
  readonly name: string;
  /** host:port the proxy listens on. */
  readonly listen: string;
  readonly upstream: string;
  readonly enabled: boolean;
}

export class ToxiproxyError extends Error {
  override name = 'ToxiproxyError';
}

export class Toxiproxy {
  readonly url: string;
  readonly proc: ManagedProcess;

  private constructor(url: string, proc: ManagedProcess) {
    this.url = url;
    this.proc = proc;
  }

  /** Starts toxiproxy-server on a free loopback port (builds it first if the cache lacks it). */
  static async start(options: { dir?: string } = {}): Promise<Toxiproxy> {
    await ensureTools(['toxiproxy-server']);
    const dir = options.dir ?? (await mkdtemp(join(tmpdir(), 'toxiproxy-')));
    if (options.dir === undefined) ownDir(dir);
    const port = await freePort();
    const proc = spawnManaged({
      name: 'toxiproxy-server',
      command: toolPath('toxiproxy-server'),
      args: ['-host', '127.0.0.1', '-port', String(port)],
      logPath: join(dir, 'toxiproxy.log'),
    });
    const url = `http://127.0.0.1:${port}`;
    await waitFor('toxiproxy /version', async () => (await fetch(`${url}/version`, { signal: AbortSignal.timeout(1000) })).ok, { timeoutMs: 15_000, process: proc });
    return new Toxiproxy(url, proc);
  }

  /** A proxy from a free loopback port to `upstream` (host:port). */
  async createProxy(name: string, upstream: string): Promise<Proxy> {
    const listen = `127.0.0.1:${await freePort()}`;
    const info = await this.#call<ProxyInfo>('POST', '/proxies', { name, listen, upstream, enabled: true });
    return new Proxy(this, info);
  }

  /** @internal */
  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    return this.#call(method, path, body);
  }

  async #call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const response = await fetch(`${this.url}${path}`, {
      method,
      ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
      signal: AbortSignal.timeout(5_000),
    });
    const text = await response.text();
    if (!response.ok) throw new ToxiproxyError(`toxiproxy ${method} ${path}: HTTP ${response.status} ${text.trim()}`);
    return (text === '' ? undefined : JSON.parse(text)) as T;
  }

  async stop(): Promise<void> {
    await this.proc.stop(2_000);
  }
}

export class Proxy {
  readonly #server: Toxiproxy;
  readonly name: string;
  /** host:port clients connect to instead of the upstream. */
  readonly listen: string;
  readonly upstream: string;
  readonly #toxics = new Set<string>();

  constructor(server: Toxiproxy, info: ProxyInfo) {
    this.#server = server;
    this.name = info.name;
    this.listen = info.listen;
    this.upstream = info.upstream;
  }

  get port(): number {
    return Number(this.listen.slice(this.listen.lastIndexOf(':') + 1));
  }

  /** Adds a toxic to one direction (downstream: server -> client); its name removes it again. */
  async addToxic(name: string, toxic: Toxic, stream: Stream = 'downstream'): Promise<void> {
    await this.#server.call('POST', `/proxies/${this.name}/toxics`, { name, type: toxic.type, stream, toxicity: 1, attributes: toxic.attributes });
    this.#toxics.add(name);
  }

  /** The same toxic in both directions (names `${name}-up`, `${name}-down`). */
  async addToxicBothWays(name: string, toxic: Toxic): Promise<void> {
    await this.addToxic(`${name}-down`, toxic, 'downstream');
    await this.addToxic(`${name}-up`, toxic, 'upstream');
  }

  async removeToxic(name: string): Promise<void> {
    await this.#server.call('DELETE', `/proxies/${this.name}/toxics/${name}`);
    this.#toxics.delete(name);
  }

  /** Removes every toxic this client added (the link is healthy again). */
  async clearToxics(): Promise<void> {
    for (const name of [...this.#toxics]) await this.removeToxic(name);
  }

  /**
   * Disabled: every connection is closed and new ones are refused (a hard partition the
   * client notices at once). Enabled again: connections are accepted.
   */
  async setEnabled(enabled: boolean): Promise<void> {
    await this.#server.call('POST', `/proxies/${this.name}`, { enabled });
  }

  /**
   * A blackhole: data is dropped both ways and connections stay open (timeout 0 never closes
   * them), as when a network path silently stops delivering packets.
   */
  async blackhole(): Promise<void> {
    await this.addToxicBothWays('blackhole', { type: 'timeout', attributes: { timeout: 0 } });
  }

  /**
   * Ends a blackhole. Bytes dropped meanwhile left the open connections' streams corrupt,
   * so those connections are reset (as a real network path's would be, by the peer's TCP
   * timers or a middlebox); clients reconnect.
   */
  async heal(): Promise<void> {
    await this.setEnabled(false);
    await this.clearToxics();
    await this.setEnabled(true);
  }
}
