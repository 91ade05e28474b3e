// The machinery shared by the chaos and fault suites: a real cluster, controller replicas
// (with a supervisor that restarts one that exits on its own, as the kubelet would), seeded
// pod churn, and observers independent of the controller (an etcd watch on the key root,
// one on the election prefix, a Kubernetes pod watch). `scenario` runs churn around a fault,
// measures convergence and tallies the DELETEs that removed a live pod's key (rule in
// timeline.ts); the rows make the table each suite prints at the end.
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { startCluster, type Cluster, type ClusterOptions } from '../../cluster/cluster.ts';
import type { AuditRecord } from '../../../src/types.ts';
import { eventually, RegistryObserver, startController, type ControllerProcess, type WatchedEvent } from '../support.ts';
import { Churn, within, type ChurnStats } from './churn.ts';
import { RevisionClock } from './clock.ts';
import { podState, PodWatcher } from './pods.ts';
import { PodTimeline, type LiveDelete } from './timeline.ts';

/** Skew allowed between our two watches and the controller's (see timeline.ts). */
export const GRACE_MS = 1000;
/**
 * A DELETE of a pod that was un-Ready until less than this before is "late", not false
 * (timeline.ts): the etcd call deadline (5 s) plus its retry, for writes held up by a dead
 * etcd member.
 */
export const LATE_WINDOW_MS = 10_000;
/** How long a scenario may take to converge before it fails (the figure is reported). */
export const CONVERGE_TIMEOUT_MS = 30_000;

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
export const iso = (ms: number): string => new Date(ms).toISOString();
/** A timeout for Promise.race that does not keep the test process alive. */
export const deadline = (ms: number): Promise<undefined> => new Promise((resolve) => setTimeout(() => resolve(undefined), ms).unref());

export interface SuiteOptions {
  /** Namespace, service name and owner id (keys live under `/${name}_PRE/`). */
  readonly name: string;
  readonly leaseTtlS: number;
  readonly electionTtlS: number;
  readonly cluster: ClusterOptions;
  /** Flags besides environment, owner, namespace, TTLs and reconcile interval. */
  readonly extraArgs?: readonly string[];
  /**
   * The etcd endpoints and kubeconfig a new replica uses (e.g. through its own fault
   * proxies); default: the registry and the admin kubeconfig directly.
   */
  readonly links?: (replicaName: string) => Promise<{ etcdEndpoints: readonly string[]; kubeconfig: string }>;
}

export interface FaultResult {
  /** Epoch ms at which the fault was over (the figure counts from here). */
  readonly faultEnd: number;
  readonly faultStart: number;
  readonly takeoverS?: number;
  readonly note?: string;
  /** Set when the harness could not create the scenario's conditions (an overloaded machine). */
  readonly inconclusive?: string;
}

export interface ScenarioOptions {
  readonly liveDeletesAllowed?: boolean;
  readonly sameLease?: boolean;
}

export interface Row {
  readonly scenario: string;
  readonly faultS: number;
  readonly deletes: number;
  /** DELETEs of a live key (the acceptance figure). */
  readonly liveDeletes: number;
  /** DELETEs of a pod Ready again after a real un-Ready spell (decided before, applied late). */
  readonly lateDeletes: number;
  readonly convergedS: number;
  /** Longest wait of a pod that turned Ready during the scenario for its key (our two watches). */
  readonly maxRegisterS: number;
  readonly takeoverS: number | undefined;
  readonly restarts: number;
  readonly churn: ChurnStats;
  readonly note: string;
}

export interface ScenarioOutcome {
  readonly live: LiveDelete[];
  readonly row: Row;
  /** Index into observer.events where the scenario began. */
  readonly from: number;
}

export class ChaosSuite {
  readonly options: SuiteOptions;
  readonly prefix: string;
  readonly electionPrefix: string;
  /** Written and deleted by the suite to tell when its etcd watch has caught up. */
  readonly sentinel: string;
  readonly seed = Number(process.env['CHAOS_SEED'] ?? Math.floor(Math.random() * 2 ** 31));
  readonly annotations: Record<string, string>;
  readonly timeline = new PodTimeline();
  readonly replicas: ControllerProcess[] = [];
  readonly unexpectedExits: Array<{ name: string; code: number | null; at: number }> = [];
  readonly rows: Row[] = [];
  /** Keys under the prefix that are not the controller's (another owner's): convergence ignores them. */
  readonly foreignKeys = new Set<string>();
  cluster!: Cluster;
  core!: CoreV1Api;
  observer!: RegistryObserver;
  elections!: RegistryObserver;
  churn!: Churn;
  #podWatcher: PodWatcher | undefined;
  #clock: RevisionClock | undefined;
  readonly #expectedExit = new WeakSet<ControllerProcess>();
  #stopping = false;
  #serial = 0;

  constructor(options: SuiteOptions) {
    this.options = options;
    this.prefix = `/${options.name}_PRE/`;
    this.electionPrefix = `election/etcd-registrar/${options.name}/`;
    this.sentinel = `${this.prefix}${options.name}-sentinel`;
    this.annotations = { 'etcd-registrar.io/register': 'true', 'etcd-registrar.io/service': options.name, 'etcd-registrar.io/port': '86' };
  }

  keyOf = (ip: string): string => `${this.prefix}${ip}-86`;

  /** When an etcd change happened (its watch event may arrive late): see clock.ts. */
  changedAt = (event: WatchedEvent): { lo: number; hi: number } => this.#clock!.bounds(event.revision, event.at);

  get args(): string[] {
    const { name, leaseTtlS, electionTtlS, extraArgs = [] } = this.options;
    return ['--environment', 'PRE', '--owner-id', name, '--namespaces', name, '--lease-ttl', `${leaseTtlS}s`, '--election-ttl', `${electionTtlS}s`, '--reconcile-interval', '5s', ...extraArgs];
  }

  async setUp(): Promise<void> {
    const { name } = this.options;
    this.cluster = await startCluster(this.options.cluster);
    await this.cluster.createNamespace(name);
    const kc = new KubeConfig();
    kc.loadFromFile(this.cluster.kubeconfigPath);
    this.core = kc.makeApiClient(CoreV1Api);
    this.#podWatcher = new PodWatcher(this.cluster.kubeconfigPath, name, this.timeline);
    await this.#podWatcher.start();
    // Fixed 250 ms watch retries: after an etcd outage the watch must catch up quickly.
    this.observer = new RegistryObserver(this.cluster.registryEndpoints, { watchRetryMs: 250 });
    await this.observer.watch(this.prefix);
    this.#clock = new RevisionClock(async () => (await this.observer.client.get(this.sentinel).exec()).header.revision);
    this.#clock.start();
    this.elections = new RegistryObserver(this.cluster.registryEndpoints, { watchRetryMs: 250 });
    await this.elections.watch(this.electionPrefix);
    await this.cluster.kubectl(['apply', '-f', '-'], {
      input: JSON.stringify({
        apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'churn', namespace: name },
        spec: {
          replicas: 6, selector: { matchLabels: { app: 'churn' } },
          template: {
            metadata: { labels: { app: 'churn' }, annotations: this.annotations },
            spec: { terminationGracePeriodSeconds: 3, containers: [{ name: 'app', image: 'churn:1' }] },
          },
        },
      }),
    });
    this.churn = new Churn({ kubeconfigPath: this.cluster.kubeconfigPath, namespace: name, deployment: 'churn', seed: this.seed });
  }

  /** Stops everything and prints the table (`header`: the suite's first line). */
  async tearDown(header: string): Promise<void> {
    this.#stopping = true;
    await this.churn?.stop().catch(() => undefined);
    this.#podWatcher?.stop();
    this.#clock?.stop();
    for (const replica of this.running()) {
      replica.proc.signal('SIGCONT');
      await this.stopReplica(replica);
    }
    await this.observer?.close();
    await this.elections?.close();
    await this.cluster?.stop();
    const lines = [
      `${header}, seed ${this.seed} (CHAOS_SEED=${this.seed} replays the churn), lease TTL ${this.options.leaseTtlS} s, election TTL ${this.options.electionTtlS} s, grace ${GRACE_MS} ms`,
      '| scenario | fault s | DELETEs | live-key DELETEs | late DELETEs (pod Ready again after an un-Ready spell) | converged s after fault | longest wait of a new Ready pod for its key, s | new pod registered s after kill | replica restarts | churn | note |',
      '|---|---|---|---|---|---|---|---|---|---|---|',
      ...this.rows.map(formatRow),
    ];
    process.stdout.write(lines.map((line) => `# ${line}`).join('\n') + '\n');
  }

  // -------------------------------------------------------------------------------------
  // Replicas

  async spawnReplica(): Promise<ControllerProcess> {
    const name = `replica-${++this.#serial}`;
    const links = this.options.links === undefined
      ? { etcdEndpoints: this.cluster.registryEndpoints, kubeconfig: this.cluster.kubeconfigPath }
      : await this.options.links(name);
    const replica = await startController({ kubeconfig: links.kubeconfig, etcdEndpoints: links.etcdEndpoints, extraArgs: this.args, name });
    this.replicas.push(replica);
    void replica.proc.exited.then(async (status) => {
      if (this.#stopping || this.#expectedExit.has(replica)) return;
      this.unexpectedExits.push({ name, code: status.code, at: Date.now() });
      await sleep(500);
      if (!this.#stopping) await this.spawnReplica().catch(() => undefined);
    });
    return replica;
  }

  async startReplica(): Promise<ControllerProcess> {
    const replica = await this.spawnReplica();
    await replica.waitReady(60_000);
    return replica;
  }

  running(): ControllerProcess[] {
    return this.replicas.filter((r) => r.proc.isRunning());
  }

  async leader(timeoutMs = 15_000): Promise<ControllerProcess> {
    let found: ControllerProcess | undefined;
    await eventually('a running leader', () => (found = this.running().find(isLeader)) !== undefined, timeoutMs);
    assert.ok(found);
    return found;
  }

  /** Brings the number of running replicas to `count` (all ready), with one leader. */
  async ensureReplicas(count: number): Promise<void> {
    while (this.running().length < count) await this.startReplica();
    // Set-up only: surplus standbys go the quick way.
    for (const extra of this.running().filter((r) => !isLeader(r)).slice(0, Math.max(0, this.running().length - count))) await this.killReplica(extra);
    for (const replica of this.running()) await replica.waitReady(60_000);
    await this.leader();
  }

  /** SIGTERM, then SIGKILL after `graceMs` as the kubelet would; `hung` says the grace ran out. */
  async stopReplica(replica: ControllerProcess, graceMs = 10_000): Promise<{ code: number | null; hung: boolean }> {
    this.#expectedExit.add(replica);
    replica.proc.signal('SIGTERM');
    const status = await Promise.race([replica.proc.exited, deadline(graceMs)]);
    if (status !== undefined) return { code: status.code, hung: false };
    replica.proc.signal('SIGKILL');
    return { code: (await replica.proc.exited).code, hung: true };
  }

  async killReplica(replica: ControllerProcess): Promise<void> {
    this.#expectedExit.add(replica);
    replica.proc.signal('SIGKILL');
    await replica.proc.exited;
  }

  // -------------------------------------------------------------------------------------
  // Convergence: etcd under the prefix holds exactly the serving pods' keys and values, on
  // the owner's data lease (keys of other owners aside).

  async registryMatchesReadyPods(): Promise<boolean> {
    const pods = (await within(this.core.listNamespacedPod({ namespace: this.options.name }), 5000, 'pod list')).items;
    const expected = new Map<string, string>();
    for (const pod of pods) {
      const state = podState(pod, 0);
      if (state.serving) expected.set(this.keyOf(state.ip), `${state.ip}:86`);
    }
    const lease = await this.observer.dataLease(this.options.name);
    const snapshot = await this.observer.snapshot(this.prefix);
    snapshot.delete(this.sentinel);
    for (const key of this.foreignKeys) snapshot.delete(key);
    if (snapshot.size !== expected.size) return false;
    for (const [key, state] of snapshot) if (expected.get(key) !== state.value || state.lease !== lease) return false;
    return true;
  }

  /** Waits until our etcd watch delivered everything written so far (it reconnects after outages). */
  async observerCaughtUp(): Promise<void> {
    const { observer, sentinel } = this;
    const from = observer.events.length;
    await eventually('sentinel written', async () => {
      await observer.client.put(sentinel).value('sentinel').exec();
      await observer.client.delete().key(sentinel).exec();
      return true;
    }, 20_000);
    await eventually('our etcd watch caught up', () => observer.events.slice(from).some((e) => e.type === 'delete' && e.key === sentinel), 20_000);
  }

  async createProbe(name: string): Promise<void> {
    await this.core.createNamespacedPod({
      namespace: this.options.name,
      body: { metadata: { name, labels: { app: 'probe' }, annotations: this.annotations }, spec: { terminationGracePeriodSeconds: 3, containers: [{ name: 'app', image: 'probe:1' }] } },
    });
  }

  /** Seconds from `since` until the etcd watch saw the probe pod's key PUT. */
  async probeRegisteredAfter(name: string, since: number, timeoutMs = 20_000): Promise<number> {
    let put: WatchedEvent | undefined;
    await eventually(`${name} registered`, () => {
      const seen = this.timeline.servingSince(name, since);
      put = seen === undefined ? undefined : this.observer.events.find((e) => e.type === 'put' && e.key === this.keyOf(seen.ip) && e.at >= since);
      return put !== undefined;
    }, timeoutMs);
    return ((put === undefined ? since : this.changedAt(put).hi) - since) / 1000;
  }

  // -------------------------------------------------------------------------------------
  // One scenario: churn on, fault, churn off, convergence, DELETE tally.

  async scenario(t: TestContext, name: string, options: ScenarioOptions, fault: () => Promise<FaultResult>): Promise<ScenarioOutcome> {
    const { observer, timeline, churn, sentinel, prefix, keyOf, changedAt } = this;
    const settled = (): Promise<boolean> => this.registryMatchesReadyPods();
    await eventually('settled before the scenario', settled, CONVERGE_TIMEOUT_MS);
    const leaseBefore = await observer.dataLease(this.options.name);
    const from = observer.events.length;
    const startedAt = Date.now();
    const exitsFrom = this.unexpectedExits.length;
    churn.start();
    // Some churn before the fault, so that the fault hits a controller with work in flight.
    let result: FaultResult;
    let churnStats: ChurnStats;
    try {
      await eventually('churn under way', () => churn.ops >= 2, 10_000);
      result = await fault();
    } finally {
      // Also when the fault fails: the next scenario must not inherit a running churn.
      churnStats = await churn.stop();
    }
    await eventually(`${name}: etcd holds exactly the Ready pods' keys`, settled, CONVERGE_TIMEOUT_MS);
    const convergedAt = Date.now();
    await this.observerCaughtUp();
    const deletes = observer.events.slice(from).filter((e) => e.type === 'delete' && e.key.startsWith(prefix) && e.key !== sentinel && !this.foreignKeys.has(e.key));
    // The live-key rule looks GRACE_MS past each DELETE: let that window close.
    await sleep((deletes.at(-1)?.at ?? 0) + GRACE_MS + 100 - Date.now());
    const live = timeline.liveDeletes(deletes.map((e) => ({ key: e.key, from: changedAt(e).lo, at: changedAt(e).hi })), GRACE_MS, keyOf, LATE_WINDOW_MS);
    const falseDeletes = live.filter((d) => !d.late);
    const leaseAfter = await observer.dataLease(this.options.name);
    const puts = observer.events.slice(from).filter((e) => e.type === 'put');
    let maxRegisterS = 0;
    for (const start of timeline.servingStarts(startedAt, convergedAt)) {
      // Our pod watch may see Ready after the controller did: a PUT up to GRACE_MS early counts.
      const put = puts.map((e) => ({ key: e.key, at: changedAt(e).hi })).find((e) => e.key === keyOf(start.ip) && e.at >= start.at - GRACE_MS && e.at <= (start.endedAt ?? Infinity));
      if (put !== undefined) maxRegisterS = Math.max(maxRegisterS, (put.at - start.at) / 1000);
    }
    const notes = [result.note ?? '', leaseAfter === leaseBefore ? '' : 'new data lease', result.inconclusive === undefined ? '' : `INCONCLUSIVE: ${result.inconclusive}`].filter((n) => n !== '');
    const row: Row = {
      scenario: name,
      faultS: (result.faultEnd - result.faultStart) / 1000,
      deletes: deletes.length,
      liveDeletes: falseDeletes.length,
      lateDeletes: live.length - falseDeletes.length,
      convergedS: (convergedAt - result.faultEnd) / 1000,
      maxRegisterS,
      takeoverS: result.takeoverS,
      restarts: this.unexpectedExits.length - exitsFrom,
      churn: churnStats,
      note: notes.join('; '),
    };
    this.rows.push(row);
    t.diagnostic(formatRow(row));
    if (result.inconclusive !== undefined) {
      t.skip(`inconclusive: ${result.inconclusive}`);
      return { live, row, from };
    }
    assert.ok(churnStats.ops >= 2, `churn kept going (${JSON.stringify(churnStats)})`);
    if (options.liveDeletesAllowed !== true) assert.deepEqual(falseDeletes, [], 'no DELETE of a live pod\'s key');
    if (options.sameLease !== false) assert.equal(leaseAfter, leaseBefore, 'the same data lease throughout');
    return { live, row, from };
  }

  /**
   * Fencing check: every change etcd made under the prefix after `revision` matches, key by
   * key, a write that one of `writers` audited as applied since `sinceMs`. Returns the
   * unexplained changes (one would have come from a fenced-off replica, or lacks its audit
   * record) and the applied-audits no change matches (a duplicate record, or a write that
   * never happened).
   */
  changesExplainedBy(writers: readonly ControllerProcess[], sinceMs: number, revision: bigint): { later: WatchedEvent[]; unexplained: WatchedEvent[]; unmatchedAudits: string[] } {
    const pool = new Map<string, number>();
    for (const replica of writers) {
      for (const record of replica.audits() as unknown as Array<AuditRecord & { time: string }>) {
        if (record.outcome !== 'ok' || record.action === 'skip' || record.time < iso(sinceMs)) continue;
        const kind = record.action === 'register' || record.action === 'repair' ? 'put' : 'delete';
        const id = `${kind} ${record.key ?? ''}`;
        pool.set(id, (pool.get(id) ?? 0) + 1);
      }
    }
    const later = this.observer.events.filter((e) => BigInt(e.revision) > revision && e.key !== this.sentinel && !this.foreignKeys.has(e.key));
    const unexplained = later.filter((e) => {
      const id = `${e.type} ${e.key}`;
      const left = pool.get(id) ?? 0;
      pool.set(id, left - 1);
      return left <= 0;
    });
    const unmatchedAudits = [...pool].filter(([, left]) => left > 0).map(([id, left]) => `${id} ×${left}`);
    return { later, unexplained, unmatchedAudits };
  }
}

/** Elected and not stepped down since (a deposed leader stays up as a standby and may be re-elected). */
export function isLeader(replica: ControllerProcess): boolean {
  let leads = false;
  for (const line of replica.lines()) {
    if (line['msg'] === 'elected leader') leads = true;
    else if (String(line['msg']).startsWith('leadership lost: stepping down')) leads = false;
  }
  return leads;
}

export function stepDowns(replica: ControllerProcess): number {
  return replica.lines().filter((line) => String(line['msg']).startsWith('leadership lost: stepping down')).length;
}

export function formatRow(row: Row): string {
  const churnText = `${row.churn.ops} ops${row.churn.failed > 0 ? ` (+${row.churn.failed} failed)` : ''}`;
  return `| ${row.scenario} | ${row.faultS.toFixed(1)} | ${row.deletes} | ${row.liveDeletes} | ${row.lateDeletes} | ${row.convergedS.toFixed(2)} | ${row.maxRegisterS.toFixed(2)} | ${row.takeoverS === undefined ? '-' : row.takeoverS.toFixed(2)} | ${row.restarts} | ${churnText} | ${row.note} |`;
}
