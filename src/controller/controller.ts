// The reconciler. Level-triggered: pod events only update the desired-state index and
// enqueue the etcd keys they touch; workers take batches of keys and make etcd match the
// whole pod cache for those keys. The periodic full reconcile re-reads etcd and enqueues
// every key whose state differs. Every write goes through the queue, so one key is never
// written by two workers at once.
import type { Logger } from 'pino';
import type { AuditLog } from '../observability/log.ts';
import type { Metrics } from '../observability/metrics.ts';
import { podKeyOf, podRefOf, type Change, type CurrentEntry, type DesiredEntry, type Plan, type Policy, type SlimPod } from '../types.ts';
import { isDelete, limitDeletes, plan } from '../plan/index.ts';
import { retryUntilDone } from '../backoff.ts';
import { preciseNow } from '../clock.ts';
import { KeyedWorkQueue, type BackoffOptions } from './workqueue.ts';
import { ChangeLatency, type ChangeTiming } from './latency.ts';
import { EtcdMirror } from './mirror.ts';
import { AuditTrail } from './audit-trail.ts';
import { BatchWriter } from './batch-writer.ts';
import { GrantClaims } from '../grants/claims.ts';
import type { GrantsPort } from '../grants/service-grants.ts';
import type { DesiredIndex, EventSink, HeapTrimPort, LeadershipPort, NodeFeed, PodEvent, PodSourcePort, RegistryPort, PodRef } from './ports.ts';

export interface ControllerOptions {
  readonly policy: Policy;
  readonly dryRun: boolean;
  readonly reconcileIntervalMs: number;
  /**
   * How often a reconcile reads every key under the root instead of only the directories that
   * hold our keys or wanted keys (docs/decisions/0013); 0 = every reconcile. The first always does.
   */
  readonly fullReadIntervalMs?: number | undefined;
  readonly maxDeleteShare: number;
  readonly forceDeletes: boolean;
  readonly maxBatchKeys: number;
  readonly maxInflightBatches: number;
  readonly backoff?: BackoffOptions;
}

export interface ControllerDeps {
  readonly source: PodSourcePort;
  readonly registry: RegistryPort;
  readonly desired: DesiredIndex;
  readonly events: EventSink;
  readonly audit: AuditLog;
  readonly metrics: Metrics | undefined;
  readonly logger: Logger;
  /** Absent: this is the only writer (no election). */
  readonly leadership?: LeadershipPort | undefined;
  /** Service grants (docs/decisions/0009); absent = every claim allowed. */
  readonly grants?: GrantsPort | undefined;
  /** Node zones, when the mapping uses them (the desired index reads the same cache). */
  readonly nodes?: NodeFeed | undefined;
  /** Returns the memory of a peak after a reconcile (src/heap-trim.ts); absent in one-shot commands. */
  readonly heap?: HeapTrimPort | undefined;
}

export interface ReconcileReport {
  readonly outcome: 'ok' | 'error' | 'skipped' | 'refused';
  readonly plan: Plan;
  readonly refused: readonly Change[];
  readonly durationMs: number;
}

/** How long after the last deregistration Events still wait (see Controller.deregistering). */
const DEREGISTRATION_QUIET_MS = 250;

export class Controller {
  readonly #deps: ControllerDeps;
  readonly #options: ControllerOptions;
  readonly #queue: KeyedWorkQueue;
  readonly #latency: ChangeLatency;
  /** etcd state of the keys under the root, as last read or written by us. */
  readonly #mirror: EtcdMirror;
  /** Service grants: verdicts, warnings and the audit reasons of what they caused. */
  readonly #claims: GrantClaims;
  /** Pods deleted from the cache (or refused by the grants), remembered so their deregistration names them. */
  readonly #departed = new Map<string, PodRef>();
  readonly #trail: AuditTrail;
  readonly #writer: BatchWriter;
  #workersDone: Promise<void> | undefined;
  /** performance.now() of the last deregistration an event asked for. */
  #lastUrgentAt = -Infinity;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #reconciling: Promise<ReconcileReport> | undefined;
  #reconcileRequested = false;
  #started = false;
  #stopping = false;
  #initialReconcileDone = false;
  #standby = false;
  readonly #abort = new AbortController();

  constructor(deps: ControllerDeps, options: ControllerOptions) {
    this.#deps = deps;
    this.#options = options;
    this.#queue = new KeyedWorkQueue(options.backoff === undefined ? {} : { backoff: options.backoff });
    const stages = deps.metrics?.changeStages;
    this.#latency = new ChangeLatency({ observe: stages === undefined ? undefined : (stage, change, seconds) => stages.record(stage, change, seconds) });
    this.#mirror = new EtcdMirror(deps, options.fullReadIntervalMs ?? 0);
    this.#trail = new AuditTrail(deps);
    this.#claims = new GrantClaims({ grants: deps.grants, events: deps.events, metrics: deps.metrics, logger: deps.logger, auditSkip: (pod, reason) => this.#trail.podSkip(pod, reason) });
    this.#writer = new BatchWriter(
      {
        desired: deps.desired, registry: deps.registry, leadership: deps.leadership, events: deps.events, metrics: deps.metrics, logger: deps.logger,
        queue: this.#queue, latency: this.#latency, mirror: this.#mirror, trail: this.#trail, departed: this.#departed,
        plan: (desired, current, scope) => this.#plan(desired, current, scope),
      },
      options,
    );
    deps.source.onChange((event) => this.#onPodEvent(event));
    deps.registry.on('leaseChanged', ({ previous, current }) => {
      deps.logger.warn({ previous, current }, 'data lease replaced: re-putting every registration');
      deps.metrics?.leaseChanges.inc();
      this.requestReconcile('lease replaced');
    });
    deps.grants?.onChange((namespace) => this.#onGrantsChange(namespace));
    deps.nodes?.onChange((event) => this.#onNodeChange(event.name));
    deps.leadership?.onLost((reason) => this.#stepDown(reason));
  }

  /** Waits for the pod cache, reads etcd, starts the workers and runs the first full reconcile. */
  async start(): Promise<ReconcileReport> {
    const report = await this.#startWorkersAndReconcile('startup');
    this.#initialReconcileDone = true;
    this.#scheduleNext();
    return report;
  }

  /** One full reconcile, then stop: `reconcile --once`. */
  async runOnce(): Promise<ReconcileReport> {
    try {
      return await this.#startWorkersAndReconcile('once');
    } finally {
      await this.stop();
    }
  }

  async #startWorkersAndReconcile(reason: string): Promise<ReconcileReport> {
    // Strict grants: every namespace is known before the first pod is judged, so that no
    // pod is held back (or, worse, seen as refused) for want of its namespace.
    await this.#deps.grants?.start();
    // Likewise every node's zone, or the initial list would leave its pods pending.
    await this.#deps.nodes?.start();
    await this.#deps.source.start();
    const { leadership } = this.#deps;
    if (leadership !== undefined) {
      // A standby keeps its pod cache warm and the data lease alive, and waits here.
      this.#standby = true;
      this.#deps.logger.info('standby: waiting for leadership');
      await leadership.campaign();
      this.#standby = false;
      this.#deps.metrics?.leadershipChanges.inc({ event: 'elected' });
    }
    // The only writer without an election; the elected one with it.
    this.#deps.metrics?.leader.set(1);
    // Workers must see etcd's real state, or keys queued by the initial list would be
    // planned against an empty mirror.
    await retryUntilDone(() => this.#mirror.refresh(this.#wantedKeys()), { logger: this.#deps.logger, what: 'initial etcd read', signal: this.#abort.signal });
    this.#workersDone = this.#writer.run();
    this.#started = true;
    return this.reconcileNow(reason, { mirrorFresh: true });
  }

  /** Writes that failed (etcd error or conflict) since start. */
  get failedWrites(): number {
    return this.#writer.failedWrites;
  }

  /** Ready once the cache synced and the first full reconcile finished; a standby once synced with a healthy lease. */
  notReadyReason(): string | undefined {
    if (this.#standby && this.#deps.source.synced() && this.#deps.registry.healthy()) return undefined;
    if (!this.#started || !this.#initialReconcileDone) return 'starting';
    if (!this.#deps.source.synced()) return 'pod cache not synced';
    if (!this.#deps.registry.healthy()) return 'etcd data lease not healthy';
    const noSpace = this.#deps.registry.outOfSpace();
    if (noSpace !== undefined) return `etcd out of space (NOSPACE alarm), writes rejected: ${noSpace}`;
    return undefined;
  }

  /**
   * Keys are waiting for a worker or being written, or a deregistration was asked for in the last
   * DEREGISTRATION_QUIET_MS (pods terminate in waves: the next is likely on its way): Events wait
   * for this, at most a second at a time (EventRecorder yieldTo).
   */
  busy(): boolean {
    return this.#queue.readyCount > 0 || this.#queue.processingCount > 0 || performance.now() - this.#lastUrgentAt < DEREGISTRATION_QUIET_MS;
  }

  /** The last changes committed in response to pod events, with their stage times (GET /debug/latency). */
  recentChangeTimings(): ChangeTiming[] {
    return this.#latency.recent();
  }

  /**
   * Deregistrations are queued or being written: no Event send starts, without a cap (EventRecorder
   * holdWhile). An Event POST costs this event loop time (serialising the Event, the request
   * and reading the answer), which the deregistration would wait for.
   */
  deregistering(): boolean {
    return this.#queue.urgentCount > 0 || this.#writer.urgentInFlight > 0;
  }

  get queueDepth(): number {
    return this.#queue.readyCount + this.#queue.delayedCount;
  }

  /** Keys ours by the one ownership rule (adoptable leases included, as the plan counts them). */
  ownedKeyCount(): number {
    return this.#mirror.ownedKeyCount();
  }

  /** Resolves when no key is queued or being written (delayed retries aside). */
  whenIdle(): Promise<void> {
    return this.#queue.whenIdle();
  }

  /** Runs a full reconcile soon (coalesces with one already running). */
  requestReconcile(reason: string): void {
    if (this.#stopping || !this.#started) return;
    this.#deps.logger.debug({ reason }, 'reconcile requested');
    if (this.#reconciling !== undefined) {
      this.#reconcileRequested = true;
      return;
    }
    void this.reconcileNow(reason);
  }

  /**
   * One full pass: read every key under the root, plan against the whole pod cache, hold
   * back mass deletes, enqueue the keys to change and wait until the workers wrote them.
   */
  async reconcileNow(reason: string, options: { mirrorFresh?: boolean } = {}): Promise<ReconcileReport> {
    if (this.#reconciling !== undefined) return this.#reconciling;
    this.#reconciling = this.#reconcile(reason, options.mirrorFresh === true).finally(() => {
      this.#reconciling = undefined;
      if (this.#reconcileRequested && !this.#stopping) {
        this.#reconcileRequested = false;
        void this.reconcileNow('requested during the previous reconcile');
        return;
      }
      // A reconcile follows every peak (the start, a relist, a full read): once the events it
      // settled are written, and no deregistration is about, its garbage may be given back.
      setImmediate(() => {
        if (!this.#stopping && this.#reconciling === undefined && !this.busy()) this.#deps.heap?.afterPeak(`reconcile (${reason})`);
      });
    });
    return this.#reconciling;
  }

  async #reconcile(reason: string, mirrorFresh: boolean): Promise<ReconcileReport> {
    const started = performance.now();
    const { logger, metrics, source } = this.#deps;
    const empty: Plan = { changes: [], skips: [] };
    const finish = (outcome: ReconcileReport['outcome'], plan: Plan, refused: readonly Change[]): ReconcileReport => {
      const durationMs = performance.now() - started;
      metrics?.reconciles.inc({ outcome });
      if (outcome === 'ok' || outcome === 'refused') metrics?.reconcileDuration.observe(durationMs / 1000);
      return { outcome, plan, refused, durationMs };
    };
    // A replica that stepped down writes nothing until it leads again (which reconciles).
    if (this.#standby) {
      logger.debug({ reason }, 'reconcile skipped: standby');
      return finish('skipped', empty, []);
    }
    // Never delete on a partial view: a cache between a watch error and its relist may lack pods.
    if (!source.synced()) {
      logger.warn({ reason }, 'reconcile skipped: pod cache not synced');
      return finish('skipped', empty, []);
    }
    try {
      if (!mirrorFresh) {
        await this.#mirror.refresh(this.#wantedKeys());
        // Before planning: a put whose lost attempt the read found is recorded before its delete.
        this.#writer.settleLostPuts();
      }
    } catch (error) {
      metrics?.etcdErrors.inc({ op: 'read' });
      logger.error({ err: error, reason }, 'reconcile failed: etcd read');
      return finish('error', empty, []);
    }
    const desired = this.#deps.desired.desiredAll();
    const { plan, refused } = this.#limitDeletes(this.#plan(desired, this.#mirror.entries, undefined));
    this.#trail.skips(plan);
    logger.info({ reason, desired: desired.size, current: this.#mirror.entries.size, changes: plan.changes.length, refused: refused.length }, 'reconcile planned');
    // The workers write (or, dry-run, audit) the changes, so a key is never handled twice at once.
    for (const change of plan.changes) this.#queue.add(change.key, isDelete(change));
    await this.#queue.whenIdle();
    return finish(refused.length > 0 ? 'refused' : 'ok', plan, refused);
  }

  /** Holds back mass deletes (docs/decisions/0007), saying so. */
  #limitDeletes(fullPlan: Plan): { plan: Plan; refused: readonly Change[] } {
    const { maxDeleteShare, forceDeletes } = this.#options;
    const limited = limitDeletes(fullPlan, this.ownedKeyCount(), maxDeleteShare, forceDeletes);
    if (limited.refused.length > 0) {
      this.#deps.metrics?.deletesRefused.inc(limited.refused.length);
      this.#deps.logger.warn(
        { refused: limited.refused.length, owned: this.ownedKeyCount(), maxDeleteShare },
        'reconcile would delete more than --max-delete-share of the owned keys: deletes refused (use --force-deletes if intended)',
      );
    }
    return limited;
  }

  /** Keys a scoped read must cover besides our own: every desired key and every key a departed pod left. */
  *#wantedKeys(): Iterable<string> {
    yield* this.#deps.desired.desiredAll().keys();
    yield* this.#departed.keys();
  }

  #plan(desired: ReadonlyMap<string, DesiredEntry>, current: ReadonlyMap<string, CurrentEntry>, scope: ReadonlySet<string> | undefined): Plan {
    const { registry } = this.#deps;
    return this.#claims.explain(plan({
      desired,
      current,
      claimed: (key) => this.#deps.desired.claimant(key) ?? this.#departed.get(key),
      leaseId: registry.leaseId(),
      adoptableLeases: registry.adoptableLeases(),
      policy: this.#options.policy,
      ...(scope === undefined ? {} : { scope }),
    }));
  }

  #onPodEvent(event: PodEvent): void {
    try {
      if (event.type === 'delete') this.#onPodDeleted(event);
      else this.#onPodUpserted(event);
    } catch (error) {
      // A handler that throws would crash the process: log and rely on the next reconcile.
      this.#deps.logger.error({ err: error, pod: podKeyOf(event.pod) }, 'pod event handling failed');
    }
  }

  #onPodDeleted(event: PodEvent): void {
    const { pod } = event;
    const keys = this.#deps.desired.removePod(pod.uid);
    for (const key of keys) this.#departed.set(key, podRefOf(pod));
    this.#trail.clearInvalid(pod.uid);
    this.#claims.forget(pod.uid);
    this.#enqueueForEvent(keys, event);
  }

  #onPodUpserted(event: PodEvent): void {
    const { pod } = event;
    const judgement = this.#claims.judge(pod);
    const { mapping, affectedKeys } = this.#deps.desired.upsertPod(pod, judgement?.admit);
    if (mapping.kind === 'invalid') this.#trail.invalid(pod, mapping.problems);
    else this.#trail.clearInvalid(pod.uid);
    if (judgement?.report(mapping) === true) {
      // Refused: the keys it held are released, and their deletes name the pod ('deregister', not 'orphan-delete').
      for (const key of affectedKeys) this.#departed.set(key, podRefOf(pod));
    }
    this.#enqueueForEvent(affectedKeys, event);
  }

  /**
   * Enqueues the keys an event touched. A key no pod wants any more is being deregistered: the
   * most urgent change there is (traffic still goes to a pod that is terminating or not Ready),
   * so it goes ahead of every registration.
   */
  #enqueueForEvent(keys: readonly string[], event: PodEvent): void {
    const now = preciseNow();
    for (const key of keys) {
      this.#latency.received(key, event.receivedAt ?? now, now);
      const urgent = this.#deps.desired.desiredFor(key) === undefined;
      if (urgent) this.#lastUrgentAt = performance.now();
      this.#queue.add(key, urgent);
    }
  }

  /** A namespace's grants changed: every pod in it gets a new verdict (level-triggered). */
  #onGrantsChange(namespace: string): void {
    const pods = this.#remapPods((pod) => pod.namespace === namespace);
    this.#deps.logger.debug({ namespace, pods }, 'namespace grants changed: pods re-evaluated');
  }

  /** A node's zone changed (or it appeared or vanished): its pods are mapped again. */
  #onNodeChange(node: string): void {
    const pods = this.#remapPods((pod) => pod.nodeName === node);
    this.#deps.logger.debug({ node, pods }, 'node zone changed: pods re-evaluated');
  }

  /** Feeds the cached pods that match through the pod event path again; returns how many. */
  #remapPods(matches: (pod: SlimPod) => boolean): number {
    let pods = 0;
    for (const pod of this.#deps.source.list()) {
      if (!matches(pod)) continue;
      pods++;
      this.#onPodEvent({ type: 'upsert', pod });
    }
    return pods;
  }

  #scheduleNext(): void {
    if (this.#stopping) return;
    this.#timer = setTimeout(() => {
      void this.reconcileNow('periodic').finally(() => this.#scheduleNext());
    }, this.#options.reconcileIntervalMs);
  }

  /**
   * An elected term ended without a resign (campaign lease lost: etcd unreachable past the
   * election TTL, or this process was paused). Writes stop at once (the fence is gone, and
   * in-flight transactions carry the old fence, which etcd rejects once another term exists);
   * the pod cache, the queue and the data lease are kept; the replica campaigns again and, once
   * re-elected, reconciles against a fresh full read (docs/decisions/0042).
   */
  #stepDown(reason: string): void {
    if (this.#stopping || this.#standby) return;
    this.#standby = true;
    const { logger, metrics, leadership } = this.#deps;
    metrics?.leadershipChanges.inc({ event: 'lost' });
    metrics?.leader.set(0);
    logger.warn({ reason }, 'leadership lost: stepping down to standby (pod cache and data lease kept), campaigning again');
    const lostAt = performance.now();
    void (async () => {
      try {
        await leadership?.campaign();
      } catch (error) {
        if (!this.#stopping) logger.error({ err: error }, 'campaign after stepping down failed');
        return;
      }
      if (this.#stopping) return;
      this.#standby = false;
      // Another leader may have written meanwhile: read every key again, not only our directories.
      this.#mirror.readEverythingNext();
      metrics?.leadershipChanges.inc({ event: 'elected' });
      metrics?.leader.set(1);
      logger.info({ standbySeconds: Math.round(performance.now() - lostAt) / 1000 }, 're-elected after stepping down: reconciling');
      this.requestReconcile('re-elected');
    })();
  }

  /** Stops taking work and lets in-flight writes finish. Never touches the lease or keys. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#abort.abort(new Error('controller stopping'));
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    await this.#deps.source.stop();
    await this.#deps.grants?.stop();
    await this.#deps.nodes?.stop();
    this.#queue.shutDown();
    await this.#workersDone;
    await this.#reconciling?.catch(() => undefined);
  }
}
