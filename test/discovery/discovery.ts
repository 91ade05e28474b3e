// Service discovery as users consume it, end to end and with real components only: two
// `etcd-registrar run` replicas (leader + standby) write the skydns layout, CoreDNS serves it,
// nginx routes by name through CoreDNS to pods that really serve (pod-servers.ts, pod IPs in
// 127.1.0.0/16), and vegeta sends a constant load through nginx while a 20-pod Deployment
// rolls, scales, loses its controller leader and loses pods. Every failed request is counted;
// the figures say how fast a terminating pod leaves etcd and DNS, and how fast a Ready pod
// gets traffic. Used by `npm run discovery` (scripts/discovery.ts) and discovery.test.ts.
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { startCluster, type Cluster } from '../cluster/cluster.ts';
import { spawnManaged, waitFor, type ManagedProcess } from '../cluster/process.ts';
import { ensureTools } from '../cluster/tools.ts';
import { parseJsonLines, RegistryObserver, startController, type ControllerProcess } from '../e2e/support.ts';
import { resolveA, resolverFor, startCoreDns, type CoreDns } from './coredns.ts';
import { isFailure, startLoad, type RequestResult } from './load.ts';
import { readAccessLog, startNginx, type Nginx } from './nginx.ts';
import { EXTERNAL_READINESS_ANNOTATION, type PodServerEvent } from './pod-servers.ts';
import { listPods, type PodState } from './pods.ts';

export const SCENARIOS = ['rollout', 'scale-20-5-20', 'leader-kill-mid-rollout', 'delete-10-pods'] as const;
export type ScenarioName = (typeof SCENARIOS)[number];

export const SETTINGS = {
  namespace: 'discovery',
  zone: 'svc.example.org',
  service: 'search',
  environment: 'PRE',
  port: 8080,
  replicas: 20,
  graceSeconds: 5,
  /** skydns "ttl" of every record (--dns-ttl). */
  dnsTtlSeconds: 1,
  /** nginx `resolver ... valid=`. */
  nginxValidSeconds: 1,
  electionTtlSeconds: 2,
  podCidr: '127.1.0.0/16',
  rate: 200,
} as const;

const DNS_NAME = `${SETTINGS.service}.${SETTINGS.environment.toLowerCase()}.${SETTINGS.zone}`;
const KEY_PREFIX = `/skydns/${SETTINGS.zone.split('.').reverse().join('/')}/${SETTINGS.environment.toLowerCase()}/${SETTINGS.service}/`;
const POD_SERVERS = join(dirname(fileURLToPath(import.meta.url)), 'pod-servers.ts');
const SETTLE_TIMEOUT_MS = 120_000;
const DNS_POLL_MS = 20;

export interface Spread {
  readonly count: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

export interface ScenarioReport {
  readonly requests: number;
  readonly failed: number;
  /** Failed requests by cause ("502", "connection refused", ...). */
  readonly failures: Record<string, number>;
  /** For the requests nginx failed: the upstream it tried, with the pod that had that IP. */
  readonly failedUpstreams: Record<string, number>;
  readonly durationSeconds: number;
  /** Pods that started terminating / turned Ready during the scenario. */
  readonly terminated: number;
  readonly started: number;
  /** ms from termination start (deletionTimestamp seen) to the DELETE of its key in etcd. */
  readonly terminationToKeyDelete: Spread;
  /** ms from termination start until CoreDNS answers without the pod. */
  readonly terminationToDnsGone: Spread;
  /** ms from termination start until the pod object was gone (its listeners closed): the grace period KWOK honours. */
  readonly terminationToGone: Spread;
  /**
   * The smallest gap, over the terminated pods, between CoreDNS answering without a pod and
   * that pod being gone: DNS caching in front (nginx valid=) must stay below it.
   */
  readonly dnsGoneToPodGoneMinMs: number;
  /** ms from Ready (seen through the watch) to the first request the pod served through nginx. */
  readonly readyToFirstServed: Spread;
  /** Pods that turned Ready but served no request before the load stopped. */
  readonly readyNeverServed: number;
}

export interface DiscoveryReport {
  readonly settings: typeof SETTINGS;
  readonly scenarios: Partial<Record<ScenarioName, ScenarioReport>>;
}

export interface DiscoveryOptions {
  readonly log?: (line: string) => void;
  readonly scenarios?: readonly ScenarioName[];
}

export function spread(values: readonly number[]): Spread {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (p: number): number => sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)] ?? 0;
  return { count: sorted.length, p50: Math.round(at(0.5)), p99: Math.round(at(0.99)), max: Math.round(sorted.at(-1) ?? 0) };
}

interface DnsChange {
  readonly at: number;
  readonly ips: ReadonlySet<string>;
}

/** The running environment: cluster, CoreDNS, pod servers, nginx, controllers, observers. */
class DiscoveryRig {
  cluster!: Cluster;
  coredns!: CoreDns;
  nginx!: Nginx;
  podServers!: ManagedProcess;
  observer!: RegistryObserver;
  readonly replicas: ControllerProcess[] = [];
  readonly dnsChanges: DnsChange[] = [];
  #polling = true;
  #poller: Promise<void> | undefined;
  #replicaCount = 0;
  #generation = 0;

  readonly dir: string;
  readonly log: (line: string) => void;

  constructor(dir: string, log: (line: string) => void) {
    this.dir = dir;
    this.log = log;
  }

  async start(): Promise<void> {
    await ensureTools(['coredns', 'vegeta']);
    this.log('starting the cluster (pod IPs in 127.1.0.0/16)...');
    this.cluster = await startCluster({ podCidr: SETTINGS.podCidr, log: (line) => this.log(`  ${line}`) });
    await this.cluster.createNamespace(SETTINGS.namespace);
    this.coredns = await startCoreDns({ cluster: this.cluster, zone: SETTINGS.zone, dir: this.dir });
    this.log(`CoreDNS on ${this.coredns.address} serving ${SETTINGS.zone} from the registry etcd`);
    this.podServers = spawnManaged({
      name: 'pod-servers',
      command: process.execPath,
      args: [POD_SERVERS, this.cluster.kubeconfigPath, SETTINGS.namespace],
      logPath: join(this.dir, 'pod-servers.log'),
    });
    await waitFor('pod servers following the pods', async () => this.podEvents().some((e) => e.event === 'started'), {
      timeoutMs: 20_000,
      process: this.podServers,
    });
    this.nginx = await startNginx({
      dir: join(this.dir, 'nginx'),
      resolver: this.coredns.address,
      resolverValidSeconds: SETTINGS.nginxValidSeconds,
      upstreamName: DNS_NAME,
      upstreamPort: SETTINGS.port,
    });
    this.log(`nginx on ${this.nginx.url} -> http://${DNS_NAME}:${SETTINGS.port} (resolver valid=${SETTINGS.nginxValidSeconds}s)`);
    this.observer = new RegistryObserver(this.cluster.registryEndpoints);
    await this.observer.watch(KEY_PREFIX);
    this.#poller = this.#pollDns();
    await this.startReplica();
    await waitFor('a leader', async () => this.leader(), { timeoutMs: 30_000 });
    await this.startReplica();
    this.log(`2 controller replicas (leader ${this.leader()?.proc.name ?? '?'}), election TTL ${SETTINGS.electionTtlSeconds}s`);
    await this.applyDeployment();
    await this.settle(`${SETTINGS.replicas} pods Ready and in DNS`);
  }

  async startReplica(): Promise<ControllerProcess> {
    const name = `registrar-${String.fromCharCode(97 + this.#replicaCount++)}`;
    const replica = await startController({
      kubeconfig: this.cluster.kubeconfigPath,
      etcdEndpoints: this.cluster.registryEndpoints,
      dir: this.dir,
      name,
      extraArgs: [
        '--value-format', 'skydns', '--dns-zone', SETTINGS.zone, '--dns-ttl', `${SETTINGS.dnsTtlSeconds}s`,
        '--namespaces', SETTINGS.namespace, '--owner-id', 'discovery', '--lease-ttl', '10s',
        '--election-ttl', `${SETTINGS.electionTtlSeconds}s`, '--reconcile-interval', '10s',
      ],
    });
    this.replicas.push(replica);
    await replica.waitReady(60_000);
    return replica;
  }

  /** The running replica whose last election is not followed by a lost term (a lost term steps down). */
  leader(): ControllerProcess | undefined {
    return this.replicas.find((r) => {
      if (!r.proc.isRunning()) return false;
      const messages = r.lines().map((line) => line['msg']);
      return messages.lastIndexOf('elected leader') > messages.lastIndexOf('leadership lost');
    });
  }

  podEvents(): PodServerEvent[] {
    return parseJsonLines(readFileSync(join(this.dir, 'pod-servers.log'), 'utf8')) as unknown as PodServerEvent[];
  }

  async kubectl(...args: string[]): Promise<string> {
    return (await this.cluster.kubectl(args)).stdout;
  }

  async applyDeployment(): Promise<void> {
    const deployment = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: SETTINGS.service, namespace: SETTINGS.namespace },
      spec: {
        replicas: SETTINGS.replicas,
        selector: { matchLabels: { app: SETTINGS.service } },
        strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: '25%', maxUnavailable: 0 } },
        template: {
          metadata: {
            labels: { app: SETTINGS.service },
            annotations: {
              'etcd-registrar.io/register': 'true',
              'etcd-registrar.io/service': SETTINGS.service,
              'etcd-registrar.io/environment': SETTINGS.environment,
              'etcd-registrar.io/port': 'http',
              // KWOK's pod-delete stage then removes the pod at its deletionTimestamp, i.e.
              // after the whole grace period (its delay is capped by the time left until then).
              'pod-delete.stage.kwok.x-k8s.io/delay': '1h',
              // Ready only once the pod server listens (set by pod-servers.ts, not by KWOK).
              [EXTERNAL_READINESS_ANNOTATION]: 'external',
              generation: String(this.#generation),
            },
          },
          spec: {
            terminationGracePeriodSeconds: SETTINGS.graceSeconds,
            containers: [{ name: 'app', image: 'search:1', ports: [{ name: 'http', containerPort: SETTINGS.port }] }],
          },
        },
      },
    };
    await this.cluster.kubectl(['apply', '-f', '-'], { input: JSON.stringify(deployment) });
  }

  /** A new pod template: the Deployment rolls (maxSurge 25 %, maxUnavailable 0). */
  async rollout(): Promise<void> {
    this.#generation++;
    await this.kubectl('patch', 'deployment', SETTINGS.service, '-n', SETTINGS.namespace, '--type=merge', '-p',
      JSON.stringify({ spec: { template: { metadata: { annotations: { generation: String(this.#generation) } } } } }));
  }

  pods(): Promise<PodState[]> {
    return listPods(this.cluster, SETTINGS.namespace);
  }

  /**
   * Waits until exactly `replicas` pods exist (the terminating ones are gone), all Ready,
   * and CoreDNS answers with exactly their IPs.
   */
  async settle(what: string, replicas: number = SETTINGS.replicas): Promise<void> {
    await waitFor(what, async () => {
      const pods = await this.pods();
      if (pods.length !== replicas || pods.some((p) => !p.ready || p.terminating || p.ip === '')) return false;
      const want = pods.map((p) => p.ip).sort().join(',');
      const last = this.dnsChanges.at(-1);
      return last !== undefined && [...last.ips].sort().join(',') === want;
    }, { timeoutMs: SETTLE_TIMEOUT_MS, intervalMs: 250 });
  }

  async #pollDns(): Promise<void> {
    const resolver = resolverFor(this.coredns.port);
    let last = '';
    while (this.#polling) {
      const at = Date.now();
      try {
        const ips = await resolveA(resolver, DNS_NAME);
        const text = ips.join(',');
        if (text !== last) {
          this.dnsChanges.push({ at, ips: new Set(ips) });
          last = text;
        }
      } catch {
        // A timed-out query says nothing about membership; the next poll will.
      }
      await sleep(DNS_POLL_MS);
    }
  }

  async stop(): Promise<void> {
    this.#polling = false;
    await this.#poller;
    for (const replica of this.replicas) if (replica.proc.isRunning()) await replica.stop();
    await this.observer?.close();
    await this.nginx?.stop();
    await this.podServers?.stop(3000);
    await this.coredns?.stop();
    await this.cluster?.stop();
  }
}

/** Runs every scenario (or those asked for) on a fresh cluster; always tears it down. */
export async function runDiscovery(opts: DiscoveryOptions = {}): Promise<DiscoveryReport> {
  const log = opts.log ?? ((line: string) => console.error(line));
  const dir = await mkdtemp(join(tmpdir(), 'etcd-registrar-discovery-'));
  const rig = new DiscoveryRig(dir, log);
  const scenarios: Partial<Record<ScenarioName, ScenarioReport>> = {};
  try {
    await rig.start();
    for (const name of opts.scenarios ?? SCENARIOS) {
      log(`scenario ${name}: ${SETTINGS.rate} req/s through nginx...`);
      scenarios[name] = await runScenario(rig, name);
      const r = scenarios[name];
      log(`scenario ${name}: ${r.requests} requests, ${r.failed} failed; termination -> DNS without the pod p99 ${r.terminationToDnsGone.p99} ms`);
    }
  } finally {
    await rig.stop();
    await rm(dir, { recursive: true, force: true });
  }
  return { settings: SETTINGS, scenarios };
}

async function runScenario(rig: DiscoveryRig, name: ScenarioName): Promise<ScenarioReport> {
  const started = Date.now();
  const load = await startLoad({ url: rig.nginx.url, rate: SETTINGS.rate, dir: rig.dir, name });
  let results: RequestResult[] = [];
  try {
    await sleep(1000); // steady traffic before the change
    switch (name) {
      case 'rollout':
        await rig.rollout();
        await rig.settle('the rollout to finish (old pods gone)');
        break;
      case 'scale-20-5-20':
        await rig.kubectl('scale', `deployment/${SETTINGS.service}`, '-n', SETTINGS.namespace, '--replicas=5');
        await rig.settle('5 pods left', 5);
        await rig.kubectl('scale', `deployment/${SETTINGS.service}`, '-n', SETTINGS.namespace, `--replicas=${SETTINGS.replicas}`);
        await rig.settle(`${SETTINGS.replicas} pods again`);
        break;
      case 'leader-kill-mid-rollout': {
        const leader = rig.leader();
        if (leader === undefined) throw new Error('no controller leader before the rollout');
        await rig.rollout();
        // Mid-rollout: as soon as the first old pods are terminating.
        await waitFor('old pods terminating', async () => (await rig.pods()).some((p) => p.terminating), { timeoutMs: 30_000, intervalMs: 50 });
        leader.proc.signal('SIGKILL');
        rig.log(`  SIGKILLed the leader ${leader.proc.name} mid-rollout`);
        await rig.settle('the rollout to finish under the new leader');
        break;
      }
      case 'delete-10-pods': {
        const victims = (await rig.pods()).slice(0, 10).map((p) => p.name);
        await rig.kubectl('delete', 'pods', '-n', SETTINGS.namespace, '--wait=false', ...victims);
        await rig.settle('10 replacements Ready and the deleted pods gone');
        break;
      }
    }
    await sleep(1500); // traffic on the settled state
  } finally {
    results = await load.stop();
  }
  const ended = Date.now();
  if (name === 'leader-kill-mid-rollout') {
    // Back to a leader and a standby for whatever runs next.
    await rig.startReplica();
  }
  return measure(rig, results, started, ended);
}

function measure(rig: DiscoveryRig, results: readonly RequestResult[], from: number, to: number): ScenarioReport {
  const failures: Record<string, number> = {};
  let failed = 0;
  for (const r of results) {
    if (!isFailure(r)) continue;
    failed++;
    const cause = r.error !== '' ? r.error.replace(/^Get "[^"]*": /, '') : `HTTP ${r.code}`;
    failures[cause] = (failures[cause] ?? 0) + 1;
  }

  const events = rig.podEvents();
  const ipOf = new Map<string, string>();
  for (const e of events) if (e.event === 'listening' && e.ip !== undefined) ipOf.set(e.pod, e.ip);
  const inWindow = (e: PodServerEvent): boolean => e.at >= from && e.at <= to;

  const toDelete: number[] = [];
  const toDnsGone: number[] = [];
  const toGone: number[] = [];
  const margins: number[] = [];
  const terminating = events.filter((e) => e.event === 'terminating' && inWindow(e));
  for (const t of terminating) {
    const ip = ipOf.get(t.pod);
    if (ip === undefined) continue;
    // The controller and this observer watch independently: either may see the change first.
    const since = t.at - 2000;
    const key = `${KEY_PREFIX}${ip.replaceAll('.', '-')}-${SETTINGS.port}`;
    const del = rig.observer.events.find((e) => e.type === 'delete' && e.key === key && e.at >= since);
    if (del !== undefined) toDelete.push(del.at - t.at);
    const closed = events.find((e) => e.event === 'gone' && e.pod === t.pod);
    // The last answer holding the IP before the pod was gone (a later pod may reuse the IP
    // only after that), then the first answer without it.
    const until = closed?.at ?? to;
    const lastPresent = rig.dnsChanges.findLastIndex((c) => c.at <= until && c.ips.has(ip));
    const gone = lastPresent === -1 ? undefined : rig.dnsChanges.slice(lastPresent + 1).find((c) => !c.ips.has(ip));
    if (gone !== undefined) toDnsGone.push(gone.at - t.at);
    if (gone !== undefined && closed !== undefined) margins.push(closed.at - gone.at);
    if (closed !== undefined) toGone.push(closed.at - t.at);
  }

  const firstServed = new Map<string, number>();
  for (const r of results) if (r.pod !== '' && !firstServed.has(r.pod)) firstServed.set(r.pod, r.at + r.latencyMs);
  const readyToServed: number[] = [];
  let neverServed = 0;
  const ready = events.filter((e) => e.event === 'ready' && inWindow(e));
  for (const e of ready) {
    const served = firstServed.get(e.pod);
    if (served === undefined) neverServed++;
    else readyToServed.push(served - e.at);
  }

  const podOfIp = new Map([...ipOf].map(([pod, ip]) => [ip, pod]));
  const failedUpstreams: Record<string, number> = {};
  for (const entry of readAccessLog(rig.nginx.accessLog)) {
    if (entry.at < from || entry.at > to || entry.status === 200) continue;
    const ip = entry.upstream.split(':')[0] ?? '';
    const name = `${entry.upstream} (${podOfIp.get(ip) ?? 'no pod'})`;
    failedUpstreams[name] = (failedUpstreams[name] ?? 0) + 1;
  }

  return {
    requests: results.length,
    failed,
    failures,
    failedUpstreams,
    durationSeconds: Math.round((to - from) / 100) / 10,
    terminated: terminating.length,
    started: ready.length,
    terminationToKeyDelete: spread(toDelete),
    terminationToDnsGone: spread(toDnsGone),
    terminationToGone: spread(toGone),
    dnsGoneToPodGoneMinMs: margins.length === 0 ? 0 : Math.round(Math.min(...margins)),
    readyToFirstServed: spread(readyToServed),
    readyNeverServed: neverServed,
  };
}

/** The printed table: one row per scenario. */
export function formatReport(report: DiscoveryReport): string {
  const header = ['scenario', 'requests', 'failed', 'terminated', 'term→key DELETE ms p50/p99/max', 'term→DNS without pod ms p50/p99/max', 'term→pod gone ms p50/max', 'DNS→gone min ms', 'Ready→first served ms p50/p99/max'];
  const rows = Object.entries(report.scenarios).map(([name, r]) => [
    name,
    String(r.requests),
    String(r.failed),
    String(r.terminated),
    `${r.terminationToKeyDelete.p50}/${r.terminationToKeyDelete.p99}/${r.terminationToKeyDelete.max}`,
    `${r.terminationToDnsGone.p50}/${r.terminationToDnsGone.p99}/${r.terminationToDnsGone.max}`,
    `${r.terminationToGone.p50}/${r.terminationToGone.max}`,
    String(r.dnsGoneToPodGoneMinMs),
    `${r.readyToFirstServed.p50}/${r.readyToFirstServed.p99}/${r.readyToFirstServed.max}`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: readonly string[]): string => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  const s = report.settings;
  return [
    `${s.replicas} pods, grace ${s.graceSeconds}s, ${s.rate} req/s, DNS ttl ${s.dnsTtlSeconds}s, nginx valid=${s.nginxValidSeconds}s, election TTL ${s.electionTtlSeconds}s`,
    line(header),
    ...rows.map(line),
  ].join('\n');
}
