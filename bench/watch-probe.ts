// The intake floor of a latency run: an idle client, in a process of its own, that watches the
// same pods the same way as the controller's pod source (src/source/kube-http.ts: plain JSON
// watch on a shared connection) and does nothing but note when each event arrived. Its delay
// from the API server's acknowledgement of a change to the change's watch event is what any
// controller on this machine would see at best.
//
//   node bench/watch-probe.ts KUBECONFIG NAMESPACE
//
// Prints "ready" once the watch is open; on a line "dump" on stdin it prints every event it saw
// as JSON ([[type, resourceVersion, epoch ms], ...]) and exits.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { SharedConnectionKubeConfig } from '../src/source/kube-config.ts';
import { listPage, watchStream } from '../src/source/kube-http.ts';

/** [type, resourceVersion, epoch ms] of one watch event. */
export type ProbeEvent = [type: string, resourceVersion: string, at: number];

const preciseNow = (): number => performance.timeOrigin + performance.now();

async function probe(kubeconfig: string, namespace: string): Promise<void> {
  const kc = new SharedConnectionKubeConfig();
  kc.loadFromFile(kubeconfig);
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
    process.stdout.write(`${JSON.stringify(events)}\n`, () => process.exit(0));
    return;
  }
}

/** A running probe: `dump()` ends it and returns the time each resourceVersion arrived. */
export interface WatchProbe {
  dump(): Promise<Map<string, number>>;
  kill(): void;
}

export async function startWatchProbe(kubeconfig: string, namespace: string): Promise<WatchProbe> {
  const child: ChildProcess = spawn(process.execPath, [import.meta.filename, kubeconfig, namespace], { stdio: ['pipe', 'pipe', 'inherit'] });
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
      const events = JSON.parse(out.slice('ready\n'.length)) as ProbeEvent[];
      const arrival = new Map<string, number>();
      for (const [, rv, at] of events) if (!arrival.has(rv)) arrival.set(rv, at);
      return arrival;
    },
    kill() {
      child.kill();
    },
  };
}

if (import.meta.main) {
  const [kubeconfig, namespace] = process.argv.slice(2);
  if (kubeconfig === undefined || namespace === undefined) throw new Error('usage: node bench/watch-probe.ts KUBECONFIG NAMESPACE');
  await probe(kubeconfig, namespace);
}
