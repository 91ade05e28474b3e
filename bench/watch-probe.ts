// The independent watchers of a latency run, in a process of their own so that the bench's
// driver (200 requests/s) cannot delay them:
// - the intake floor: an idle client that watches the same pods the same way as the controller's
//   pod source (src/source/kube-http.ts: plain JSON watch on a shared connection) and does
//   nothing but note when each event arrived. Its delay from the API server's acknowledgement of
//   a change to the change's watch event is what any controller on this machine sees at best;
// - t1: an etcd watch on the registry's key prefix that notes when each revision arrived.
//
//   node bench/watch-probe.ts KUBECONFIG NAMESPACE ETCD_ENDPOINTS PREFIX
//
// Prints "ready" once both watches are open; on a line "dump" on stdin it prints what it saw as
// JSON ({pods: [[type, resourceVersion, epoch ms], ...], keys: [[put|delete, key, revision,
// epoch ms], ...]}) and exits.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { Etcd3 } from 'etcd3';
import { kubeAccessFromFile } from '../src/source/kube-access-resolve.ts';
import { listPage, watchStream } from '../src/source/kube-http.ts';
import { preciseNow } from '../src/clock.ts';

/** [type, resourceVersion, epoch ms] of one pod watch event. */
export type ProbeEvent = [type: string, resourceVersion: string, at: number];
/** [put|delete, key, revision, epoch ms] of one etcd watch event. */
export type ProbeKeyEvent = [type: 'put' | 'delete', key: string, revision: string, at: number];

async function probe(kubeconfig: string, namespace: string, endpoints: string, prefix: string): Promise<void> {
  const keyEvents: ProbeKeyEvent[] = [];
  const etcd = new Etcd3({ hosts: endpoints.split(',') });
  const watcher = await etcd.watch().prefix(prefix).create();
  const note = (type: 'put' | 'delete') => (kv: { key: Buffer; mod_revision: string }): void => {
    keyEvents.push([type, kv.key.toString(), kv.mod_revision, preciseNow()]);
  };
  watcher.on('put', note('put'));
  watcher.on('delete', note('delete'));
  watcher.on('error', (err: unknown) => process.stderr.write(`watch-probe: etcd watch: ${String(err)}\n`));
  const kc = await kubeAccessFromFile(kubeconfig);
  const path = `/api/v1/namespaces/${namespace}/pods`;
  const events: ProbeEvent[] = [];
  let resourceVersion = (await listPage(kc, path, { limit: 1, continueToken: undefined })).resourceVersion;
  const open = async (): Promise<void> => {
    await watchStream(kc, path, { resourceVersion, timeoutSeconds: 3600, inactivityMs: 600_000 }, (type, object) => {
      const at = preciseNow();
      const rv = (object as { metadata?: { resourceVersion?: string } } | null)?.metadata?.resourceVersion ?? '';
      if (rv !== '') resourceVersion = rv;
      if (type !== 'BOOKMARK') events.push([type, rv, at]);
    }, (err) => {
      if (err !== null) process.stderr.write(`watch-probe: watch ended: ${String(err)}; resuming\n`);
      void open();
    });
  };
  await open();
  process.stdout.write('ready\n');
  for await (const line of createInterface({ input: process.stdin })) {
    if (line.trim() !== 'dump') continue;
    process.stdout.write(`${JSON.stringify({ pods: events, keys: keyEvents })}\n`, () => process.exit(0));
    return;
  }
}

export interface ProbeResult {
  /** When each pod resourceVersion first arrived. */
  readonly pods: Map<string, number>;
  /** The etcd events per key, in order. */
  readonly keys: Map<string, Array<{ readonly type: 'put' | 'delete'; readonly revision: string; readonly at: number }>>;
}

/** A running probe: `dump()` ends it and returns what it saw. */
export interface WatchProbe {
  dump(): Promise<ProbeResult>;
  kill(): void;
}

export async function startWatchProbe(kubeconfig: string, namespace: string, etcdEndpoints: readonly string[], prefix: string): Promise<WatchProbe> {
  const child: ChildProcess = spawn(process.execPath, [import.meta.filename, kubeconfig, namespace, etcdEndpoints.join(','), prefix], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  let onData: (() => void) | undefined;
  child.stdout?.on('data', (chunk: Buffer) => {
    out += chunk.toString();
    onData?.();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const waitFor = (test: () => boolean, what: string): Promise<void> => new Promise((resolve, reject) => {
    const check = (): void => {
      if (test()) resolve();
    };
    onData = check;
    void exited.then((code) => (test() ? resolve() : reject(new Error(`watch-probe exited (${String(code)}) before ${what}`))));
    check();
  });
  await waitFor(() => out.startsWith('ready\n'), 'its watch was open');
  return {
    async dump() {
      child.stdin?.write('dump\n');
      await waitFor(() => out.slice('ready\n'.length).includes('\n'), 'it printed its events');
      const seen = JSON.parse(out.slice('ready\n'.length)) as { pods: ProbeEvent[]; keys: ProbeKeyEvent[] };
      const pods = new Map<string, number>();
      for (const [, rv, at] of seen.pods) if (!pods.has(rv)) pods.set(rv, at);
      const keys: ProbeResult['keys'] = new Map();
      for (const [type, key, revision, at] of seen.keys) {
        const list = keys.get(key) ?? [];
        list.push({ type, revision, at });
        keys.set(key, list);
      }
      return { pods, keys };
    },
    kill() {
      child.kill();
    },
  };
}

if (import.meta.main) {
  const [kubeconfig, namespace, endpoints, prefix] = process.argv.slice(2);
  if (kubeconfig === undefined || namespace === undefined || endpoints === undefined || prefix === undefined) {
    throw new Error('usage: node bench/watch-probe.ts KUBECONFIG NAMESPACE ETCD_ENDPOINTS PREFIX');
  }
  await probe(kubeconfig, namespace, endpoints, prefix);
}
