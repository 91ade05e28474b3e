// End-to-end helpers: run the real `etcd-registrar` command as a child process and observe
// the registry etcd independently of it (a separate etcd3 client and watch).
import { readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Etcd3, type IKeyValue, type IOptions, type Watcher } from 'etcd3';
import { freePort, spawnManaged, waitFor, type ManagedProcess } from '../cluster/process.ts';
import type { AuditRecord } from '../../src/types.ts';
import type { Cluster } from '../cluster/cluster.ts';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const registrarBin = join(repoRoot, 'bin', 'etcd-registrar.js');

export interface ControllerProcess {
  readonly proc: ManagedProcess;
  readonly logPath: string;
  readonly metricsUrl: string;
  /** Every JSON log line written so far. */
  lines(): Array<Record<string, unknown>>;
  audits(): AuditRecord[];
  waitReady(timeoutMs?: number): Promise<void>;
  /** SIGTERM and wait; resolves to the exit code. */
  stop(): Promise<number | null>;
}

export interface ControllerArgs {
  readonly kubeconfig: string;
  readonly etcdEndpoints: readonly string[];
  readonly extraArgs?: readonly string[];
  readonly dir?: string;
  readonly name?: string;
  /** Options for the controller's Node process itself, e.g. ['--max-old-space-size=160']. */
  readonly nodeOptions?: readonly string[];
  /** The script to run instead of the built bin (e.g. the image's bundle, scripts/bundle.ts). */
  readonly entry?: string;
  /** A command that runs node with the rest of its arguments (`exec "$@"`), e.g. into a memory cgroup. */
  readonly launcher?: readonly string[];
}

/** Starts `etcd-registrar run` (the built bin, as users run it) on a free metrics port. */
export async function startController(options: ControllerArgs): Promise<ControllerProcess> {
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), 'registrar-')));
  const port = await freePort();
  const logPath = join(dir, `${options.name ?? 'controller'}-${Date.now()}.log`);
  const command = options.launcher?.[0] ?? process.execPath;
  const launcherArgs = options.launcher === undefined ? [] : [...options.launcher.slice(1), process.execPath];
  const proc = spawnManaged({
    name: options.name ?? 'etcd-registrar',
    command,
    args: [
      ...launcherArgs,
      ...(options.nodeOptions ?? []),
      options.entry ?? registrarBin, 'run',
      '--kubeconfig', options.kubeconfig,
      '--etcd-endpoints', options.etcdEndpoints.join(','),
      '--metrics-address', `127.0.0.1:${port}`,
      ...(options.extraArgs ?? []),
    ],
    logPath,
  });
  const metricsUrl = `http://127.0.0.1:${port}`;
  const lines = (): Array<Record<string, unknown>> => parseJsonLines(readFileSync(logPath, 'utf8'));
  return {
    proc,
    logPath,
    metricsUrl,
    lines,
    audits: () => lines().filter((line) => line['audit'] === true) as unknown as AuditRecord[],
    waitReady: (timeoutMs = 30_000) =>
      // Each probe has its own deadline: a stopped (SIGSTOP) process accepts the connection
      // but never answers, and fetch alone would wait for minutes.
      waitFor('controller /readyz', async () => (await fetch(`${metricsUrl}/readyz`, { signal: AbortSignal.timeout(2000) })).ok, { timeoutMs, process: proc, intervalMs: 50 }).then(() => undefined),
    stop: async () => {
      proc.signal('SIGTERM');
      return (await proc.exited).code;
    },
  };
}

export function parseJsonLines(text: string): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // a line being written right now
    }
  }
  return out;
}

export interface KeyState {
  readonly value: string;
  readonly lease: string;
}

export interface WatchedEvent {
  readonly type: 'put' | 'delete';
  readonly key: string;
  readonly value: string;
  readonly at: number;
  /** etcd revision of the change (for a delete: the revision that deleted the key). */
  readonly revision: string;
}

/** An independent view of the registry etcd: reads and a watch that records every change. */
export class RegistryObserver {
  readonly client: Etcd3;
  readonly events: WatchedEvent[] = [];
  #watcher: Watcher | undefined;

  /**
   * `watchRetryMs`: reconnect a broken watch at this fixed interval instead of etcd3's
   * exponential backoff (up to 30 s), so that the watch catches up soon after an outage.
   */
  constructor(endpoints: readonly string[], options: { watchRetryMs?: number } = {}) {
    type Backoff = NonNullable<NonNullable<IOptions['faultHandling']>['watchBackoff']>;
    const retryMs = options.watchRetryMs;
    const fixed: Backoff | undefined = retryMs === undefined ? undefined : { duration: retryMs, next: () => fixed as Backoff };
    this.client = new Etcd3({
      hosts: [...endpoints],
      defaultCallOptions: () => ({ deadline: Date.now() + 5000 }),
      ...(fixed === undefined ? {} : { faultHandling: { watchBackoff: fixed } }),
    });
  }

  async watch(prefix: string): Promise<void> {
    const watcher = await this.client.watch().prefix(prefix).create();
    const record = (type: 'put' | 'delete') => (kv: IKeyValue) =>
      this.events.push({ type, key: kv.key.toString(), value: kv.value.toString(), at: Date.now(), revision: kv.mod_revision });
    watcher.on('put', record('put'));
    watcher.on('delete', record('delete'));
    // Without a listener an 'error' would crash the test process; reconnects are automatic.
    watcher.on('error', () => undefined);
    this.#watcher = watcher;
  }

  async snapshot(prefix: string): Promise<Map<string, KeyState>> {
    const response = await this.client.getAll().prefix(prefix).exec();
    return new Map(response.kvs.map((kv) => [kv.key.toString(), { value: kv.value.toString(), lease: kv.lease }]));
  }

  /** The data lease id from the owner record of `ownerId`. */
  async dataLease(ownerId: string, prefix = '/etcd-registrar/owners/'): Promise<string | undefined> {
    const text = await this.client.get(`${prefix}${ownerId}`).string();
    if (text === null) return undefined;
    const record = JSON.parse(text) as { leaseId?: string | number };
    return record.leaseId === undefined ? undefined : String(record.leaseId);
  }

  deletesOf(keys: ReadonlySet<string>): WatchedEvent[] {
    return this.events.filter((event) => event.type === 'delete' && keys.has(event.key));
  }

  async close(): Promise<void> {
    await this.#watcher?.cancel();
    this.client.close();
  }
}

/** Polls until `check` returns true; fails with `what` and the last observed detail. */
/** One sample of a controller's /metrics by its exact name and labels (`x_total{scope="unchanged"}`); NaN when absent. */
export async function metricValue(metricsUrl: string, sample: string): Promise<number> {
  const text = await (await fetch(`${metricsUrl}/metrics`, { signal: AbortSignal.timeout(5_000) })).text();
  const line = text.split('\n').find((l) => l.startsWith(`${sample} `));
  return line === undefined ? Number.NaN : Number(line.slice(sample.length + 1));
}

export async function eventually(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 15_000): Promise<void> {
  await waitFor(what, async () => (await check()) || undefined, { timeoutMs, intervalMs: 50 });
}

/** Waits until the pod is Ready with an IP (KWOK makes it so) and returns the IP. */
export async function waitPodReadyIp(cluster: Cluster, namespace: string, name: string, timeoutMs = 30_000): Promise<string> {
  let ip = '';
  await eventually(`${namespace}/${name} Ready with an IP`, async () => {
    const { stdout } = await cluster.kubectl(['get', 'pod', name, '-n', namespace, '-o', 'json']);
    const pod = JSON.parse(stdout) as { status: { podIP?: string; conditions?: Array<{ type: string; status: string }> } };
    ip = pod.status.podIP ?? '';
    return ip !== '' && (pod.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false);
  }, timeoutMs);
  return ip;
}

/** A key's etcd state with its modRevision (an untouched key keeps it), or undefined if absent. */
export async function keyState(client: Etcd3, key: string): Promise<{ value: string; lease: string; modRevision: string } | undefined> {
  const response = await client.get(key).exec();
  const kv = response.kvs[0];
  return kv === undefined ? undefined : { value: kv.value.toString(), lease: kv.lease, modRevision: kv.mod_revision };
}
