// Controller logic against small in-memory fakes of its ports. The real etcd and API server
// are exercised by test/e2e; these cases pin down the queue/plan/mirror interplay.
import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { EventEmitter } from 'node:events';
import { pino } from 'pino';
import { DesiredState } from '../desired/index.ts';
import { makePod, testConfig } from '../mapping/testing.ts';
import { AuditLog } from '../observability/log.ts';
import type { ApplyOptions, AuditRecord, Change, CurrentEntry, SlimPod } from '../types.ts';
import { Controller, type ControllerOptions } from './controller.ts';
import { keyDirectory } from '../registry/keys.ts';
import type { ApplyResult, Fence, HeapTrimPort, LeadershipPort, NodeFeed, PodEvent, PodSourcePort, RegistryPort } from './ports.ts';
import type { GrantsMode } from '../grants/grants.ts';
import { ServiceGrants, type NamespaceFeed } from '../grants/service-grants.ts';
import type { NamespaceEvent } from '../source/namespace-source.ts';

class FakeSource implements PodSourcePort {
  #listener: ((event: PodEvent) => void) | undefined;
  isSynced = true;
  readonly initial: SlimPod[] = [];
  onChange(listener: (event: PodEvent) => void): void {
    this.#listener = listener;
  }
  async start(): Promise<void> {
    for (const pod of this.initial) this.emit({ type: 'upsert', pod });
  }
  synced(): boolean {
    return this.isSynced;
  }
  stop(): void {}
  /** The cache as the events built it. */
  readonly pods = new Map<string, SlimPod>();
  list(): SlimPod[] {
    return [...this.pods.values()];
  }
  emit(event: PodEvent): void {
    if (event.type === 'upsert') this.pods.set(event.pod.uid, event.pod);
    else this.pods.delete(event.pod.uid);
    this.#listener?.(event);
  }
}

/** etcd as a map; compares like the real registry's transactions. */
class FakeRegistry extends EventEmitter implements RegistryPort {
  readonly kv = new Map<string, CurrentEntry>();
  lease = '100';
  readonly adoptable = new Set<string>();
  applied: Change[][] = [];
  /** The fence each apply() carried. */
  fences: (Fence | undefined)[] = [];
  /** When set, apply() waits for it (a write in flight). */
  gate: Promise<void> | undefined;
  revision = 1;
  leaseId(): string {
    return this.lease;
  }
  adoptableLeases(): ReadonlySet<string> {
    return this.adoptable;
  }
  healthy(): boolean {
    return true;
  }
  outOfSpace(): string | undefined {
    return undefined;
  }
  /** Directories marked by puts, like the real registry's markers (key root '/'). */
  readonly marked = new Set<string>();
  fullReads = 0;
  scopedReads = 0;
  async readScoped(wantedKeys: Iterable<string>, options: { full?: boolean } = {}): Promise<{ entries: Map<string, CurrentEntry> }> {
    if (options.full === true) this.fullReads++;
    else this.scopedReads++;
    const dirs = new Set(this.marked);
    for (const key of wantedKeys) dirs.add(keyDirectory('/', key));
    const ours = (lease: string): boolean => lease === this.lease || this.adoptable.has(lease);
    return { entries: new Map([...this.kv].filter(([key, entry]) => dirs.has(keyDirectory('/', key)) || (options.full === true && ours(entry.lease)))) };
  }
  async markDirectories(entries: Iterable<CurrentEntry>): Promise<number> {
    const before = this.marked.size;
    for (const entry of entries) if (entry.lease === this.lease || this.adoptable.has(entry.lease)) this.marked.add(keyDirectory('/', entry.key));
    return this.marked.size - before;
  }
  /** Every apply() call as it starts (before the gate). */
  started: Change[][] = [];
  /** Acts as if every transaction's first attempt failed: asks stillPlanned after the gate, as the registry does before a retry. */
  retryAfterGate = false;
  async apply(changes: readonly Change[], options: ApplyOptions = {}): Promise<ApplyResult[]> {
    this.started.push([...changes]);
    await this.gate;
    const { fence, stillPlanned } = options;
    const superseded = this.retryAfterGate && stillPlanned !== undefined ? changes.filter((change) => !stillPlanned(change)) : [];
    const written = changes.filter((change) => !superseded.includes(change));
    this.applied.push(written);
    this.fences.push(fence);
    return changes.map((change) => (superseded.includes(change) ? { change, outcome: 'superseded' } : this.#write(change)));
  }
  #write(change: Change): ApplyResult {
    if (change.action === 'register' || change.action === 'repair') this.marked.add(keyDirectory('/', change.key));
    const have = this.kv.get(change.key);
    const matches = change.action === 'register' ? have === undefined : have?.lease === change.expectedLease;
    if (!matches) return { change, outcome: 'conflict', current: have };
    const revision = String(++this.revision);
    if (change.action === 'register' || change.action === 'repair') {
      this.kv.set(change.key, { key: change.key, value: change.value, lease: this.lease, modRevision: revision });
    } else {
      this.kv.delete(change.key);
    }
    return { change, outcome: 'ok', revision };
  }
  put(key: string, value: string, lease: string): void {
    this.kv.set(key, { key, value, lease, modRevision: String(++this.revision) });
  }
}

const options: ControllerOptions = {
  policy: 'sync',
  dryRun: false,
  reconcileIntervalMs: 3_600_000,
  maxDeleteShare: 0.5,
  forceDeletes: false,
  maxBatchKeys: 100,
  maxInflightBatches: 2,
};

/** Namespaces as the namespace source would report them; start() resolves when `listed` does. */
class FakeNamespaces implements NamespaceFeed {
  #listener: ((event: NamespaceEvent) => void) | undefined;
  readonly initial: NamespaceEvent[] = [];
  listed: Promise<void> = Promise.resolve();
  startedAt = 0;
  onChange(listener: (event: NamespaceEvent) => void): void {
    this.#listener = listener;
  }
  async start(): Promise<void> {
    this.startedAt = Date.now();
    await this.listed;
    for (const event of this.initial) this.emit(event);
  }
  stop(): void {}
  emit(event: NamespaceEvent): void {
    this.#listener?.(event);
  }
}

/** An election whose terms the test grants and ends. */
class FakeLeadership implements LeadershipPort {
  #fence: Fence | undefined;
  readonly #lost: ((reason: string) => void)[] = [];
  #grant: (() => void) | undefined;
  #terms = 0;
  campaigns = 0;
  campaign(): Promise<Fence> {
    this.campaigns++;
    return new Promise((resolve) => {
      this.#grant = () => resolve(this.#fence = { key: 'election/test', createRevision: String(++this.#terms) });
    });
  }
  elect(): void {
    this.#grant?.();
  }
  lose(reason: string): void {
    this.#fence = undefined;
    for (const listener of this.#lost) listener(reason);
  }
  fence(): Fence | undefined {
    return this.#fence;
  }
  onLost(listener: (reason: string) => void): void {
    this.#lost.push(listener);
  }
}

async function until(what: string, condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function setup(t: TestContext, overrides: Partial<ControllerOptions> = {}, grantsMode?: GrantsMode, leadership?: LeadershipPort, heap?: HeapTrimPort) {
  const source = new FakeSource();
  const registry = new FakeRegistry();
  const records: AuditRecord[] = [];
  const events: string[] = [];
  const sink = new Writable({ write: (_chunk, _encoding, callback) => callback() });
  const audit = new AuditLog('test-owner', sink);
  audit.subscribe((record) => records.push(record));
  const namespaces = new FakeNamespaces();
  const logger = pino({ level: 'silent' });
  const grants = grantsMode === undefined
    ? undefined
    : new ServiceGrants({ mode: grantsMode, annotation: 'etcd-registrar.io/allowed-services', staticGrants: new Map([['platform', ['*']]]), namespaces, logger });
  const controller = new Controller(
    {
      source,
      registry,
      desired: new DesiredState(testConfig),
      events: { record: (pod, type, reason) => events.push(`${type} ${reason} ${pod.namespace}/${pod.name}`) },
      audit,
      metrics: undefined,
      logger: pino({ level: 'silent' }),
      grants,
      leadership,
      heap,
    },
    { ...options, ...overrides },
  );
  t.after(() => controller.stop());
  return { source, registry, records, events, controller, namespaces };
}

const key = (ip: string, port = 86): string => `/search_PRE/${ip}-${port}`;

async function waitUntil(check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('Controller', () => {
  it('registers Ready pods at startup and a second round makes no changes', async (t) => {
    const { source, registry, controller, records } = setup(t);
    source.initial.push(makePod({ uid: 'a', name: 'a', podIPs: ['10.1.0.1'] }), makePod({ uid: 'b', name: 'b', podIPs: ['10.1.0.2'] }));
    await controller.start();
    await controller.whenIdle();
    assert.deepEqual([...registry.kv.keys()].sort(), [key('10.1.0.1'), key('10.1.0.2')]);
    assert.equal(registry.kv.get(key('10.1.0.1'))?.value, '10.1.0.1:86');
    assert.equal(registry.kv.get(key('10.1.0.1'))?.lease, '100');
    assert.equal(records.filter((r) => r.action === 'register' && r.outcome === 'ok').length, 2);
    const writes = registry.applied.length;
    const second = await controller.reconcileNow('test');
    assert.equal(second.plan.changes.length, 0);
    assert.equal(registry.applied.length, writes);
    await controller.stop();
  });

  it('reads every key at start-up, then only the directories that hold our or wanted keys', async (t) => {
    const { source, registry, controller, records } = setup(t, { fullReadIntervalMs: 3_600_000 });
    // Our key from an earlier run, already right: nothing is written, but its directory is marked.
    registry.put(key('10.1.0.1'), '10.1.0.1:86', '100');
    registry.put('/other_PRE/x', 'foreign', '0');
    source.initial.push(makePod({ uid: 'a', name: 'a', podIPs: ['10.1.0.1'] }));
    await controller.start();
    await controller.whenIdle();
    assert.equal(registry.fullReads, 1);
    assert.equal(registry.applied.length, 0);
    assert.deepEqual([...registry.marked], ['/search_PRE/']);

    // An orphan of ours in a marked directory is found by the scoped read and removed.
    registry.put(key('10.1.0.9'), '10.1.0.9:86', '100');
    const report = await controller.reconcileNow('test');
    assert.equal(registry.fullReads, 1);
    assert.equal(registry.scopedReads, 1);
    assert.deepEqual(report.plan.changes.map((c) => `${c.action} ${c.key}`), [`orphan-delete ${key('10.1.0.9')}`]);
    await controller.whenIdle();
    assert.ok(!registry.kv.has(key('10.1.0.9')));
    assert.equal(registry.kv.get('/other_PRE/x')?.value, 'foreign');
    assert.equal(records.filter((r) => r.action === 'orphan-delete').length, 1);
  });

  it('offers the memory of a reconcile back once its writes are done, never while a deregistration is about', async (t) => {
    const offers: Array<{ reason: string; busy: boolean; keys: number }> = [];
    let controllerRef: Controller | undefined;
    let registryRef: FakeRegistry | undefined;
    const heap: HeapTrimPort = {
      afterPeak: (reason) => {
        offers.push({ reason, busy: controllerRef?.busy() ?? true, keys: registryRef?.kv.size ?? -1 });
        return true;
      },
    };
    const { source, registry, controller } = setup(t, {}, undefined, undefined, heap);
    controllerRef = controller;
    registryRef = registry;
    source.initial.push(makePod({ uid: 'a', name: 'a', podIPs: ['10.1.0.1'] }), makePod({ uid: 'b', name: 'b', podIPs: ['10.1.0.2'] }));
    await controller.start();
    await waitUntil(() => offers.length === 1, 5_000);
    assert.deepEqual(offers, [{ reason: 'reconcile (startup)', busy: false, keys: 2 }]);
    // A pod stops being Ready just before a reconcile ends: its deregistration is about, so the
    // pause waits for the next reconcile.
    const reconciled = controller.reconcileNow('test');
    source.emit({ type: 'upsert', pod: makePod({ uid: 'a', name: 'a', podIPs: ['10.1.0.1'], ready: false }) });
    await reconciled;
    await controller.whenIdle();
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(offers.length, 1);
    assert.ok(!registry.kv.has(key('10.1.0.1')));
  });

  it('is busy while keys wait or are being written (Events yield to it)', async (t) => {
    const { source, registry, controller } = setup(t);
    await controller.start();
    assert.equal(controller.busy(), false);
    let open = (): void => {};
    registry.gate = new Promise<void>((resolve) => { open = resolve; });
    source.emit({ type: 'upsert', pod: makePod({ uid: 'a', name: 'a', podIPs: ['10.1.0.1'] }) });
    await new Promise<void>((resolve) => setImmediate(resolve));
    assert.equal(controller.busy(), true);
    open();
    await controller.whenIdle();
    assert.equal(controller.busy(), false);
    assert.ok(registry.kv.has(key('10.1.0.1')));
  });

  it('writes a deregistration enqueued behind N registrations first, in a batch of its own, while the writer slots are busy', async (t) => {
    const { source, registry, controller } = setup(t, { maxBatchKeys: 100, maxInflightBatches: 1 });
    const leaving = makePod({ uid: 'old', name: 'old', podIPs: ['10.1.0.1'] });
    source.initial.push(leaving);
    await controller.start();
    await controller.whenIdle();
    let open = (): void => {};
    registry.gate = new Promise<void>((resolve) => { open = resolve; });
    registry.started = [];
    registry.applied = [];
    const tick = (): Promise<void> => new Promise<void>((resolve) => setImmediate(resolve));
    for (let i = 0; i < 250; i++) source.emit({ type: 'upsert', pod: makePod({ uid: `r${i}`, name: `r${i}`, podIPs: [`10.2.0.${i}`] }) });
    await tick();
    assert.equal(registry.started.length, 1, 'the only regular writer slot holds the first 100 registrations');
    assert.equal(controller.deregistering(), false, 'registrations alone do not hold Events');
    source.emit({ type: 'delete', pod: leaving });
    assert.equal(controller.deregistering(), true, 'Events wait while a deregistration is pending');
    for (let i = 0; i < 10 && registry.started.length < 2; i++) await tick();
    assert.deepEqual(registry.started[1]?.map((c) => `${c.action} ${c.key}`), [`deregister ${key('10.1.0.1')}`], 'taken at once, alone, in the slot kept for deregistrations');
    open();
    await controller.whenIdle();
    assert.deepEqual(registry.applied.map((batch) => batch.length), [100, 1, 100, 50]);
    assert.ok(!registry.kv.has(key('10.1.0.1')));
    assert.equal(registry.kv.size, 250);
    assert.equal(controller.deregistering(), false);
    assert.equal(controller.busy(), true, 'Events still yield (capped) right after a deregistration');
    await waitUntil(() => !controller.busy(), 2000);
  });

  it('with a full-read interval of 0 every reconcile reads every key', async (t) => {
    const { registry, controller } = setup(t, { fullReadIntervalMs: 0 });
    await controller.start();
    await controller.reconcileNow('test');
    await controller.reconcileNow('test');
    assert.equal(registry.fullReads, 3);
    assert.equal(registry.scopedReads, 0);
  });

  it('deregisters on un-Ready and termination at once, and registers again when Ready', async (t) => {
    const { source, registry, controller, events } = setup(t);
    await controller.start();
    const pod = makePod({ uid: 'a', name: 'a', podIPs: ['10.1.0.1'] });
    source.emit({ type: 'upsert', pod });
    await controller.whenIdle();
    assert.ok(registry.kv.has(key('10.1.0.1')));
    source.emit({ type: 'upsert', pod: { ...pod, ready: false } });
    await controller.whenIdle();
    assert.ok(!registry.kv.has(key('10.1.0.1')));
    source.emit({ type: 'upsert', pod });
    await controller.whenIdle();
    assert.ok(registry.kv.has(key('10.1.0.1')));
    source.emit({ type: 'upsert', pod: { ...pod, terminating: true } });
    await controller.whenIdle();
    assert.ok(!registry.kv.has(key('10.1.0.1')));
    assert.deepEqual(events, ['Normal Registered default/a', 'Normal Deregistered default/a', 'Normal Registered default/a', 'Normal Deregistered default/a']);
    await controller.stop();
  });

  it('never deletes a live pod\'s key when an old pod with the same IP goes away', async (t) => {
    const { source, registry, controller } = setup(t);
    await controller.start();
    const old = makePod({ uid: 'old', name: 'old', podIPs: ['10.1.0.9'], creationTimestamp: '2024-01-01T00:00:00Z' });
    const fresh = makePod({ uid: 'new', name: 'new', podIPs: ['10.1.0.9'], creationTimestamp: '2024-01-02T00:00:00Z' });
    source.emit({ type: 'upsert', pod: fresh });
    // Out of order: the old pod's terminating update and delete arrive after the new pod.
    source.emit({ type: 'upsert', pod: { ...old, terminating: true, ready: false } });
    source.emit({ type: 'delete', pod: old });
    await controller.whenIdle();
    assert.equal(registry.kv.get(key('10.1.0.9'))?.value, '10.1.0.9:86');
    await controller.stop();
  });

  it('drops a deregistration that waited out an etcd stall when a new Ready pod took the IP meanwhile', async (t) => {
    const { source, registry, controller, records } = setup(t);
    await controller.start();
    const old = makePod({ uid: 'old', name: 'old', podIPs: ['10.1.0.9'], creationTimestamp: '2024-01-01T00:00:00Z' });
    source.emit({ type: 'upsert', pod: old });
    await controller.whenIdle();
    const registered = registry.kv.get(key('10.1.0.9'));
    assert.equal(registered?.value, '10.1.0.9:86');
    // etcd stalls: the old pod's deregistration is planned and waits in the registry's retries.
    let open = (): void => {};
    registry.gate = new Promise<void>((resolve) => { open = resolve; });
    registry.retryAfterGate = true;
    registry.started = [];
    source.emit({ type: 'upsert', pod: { ...old, terminating: true, ready: false } });
    await waitUntil(() => registry.started.length === 1, 2000);
    assert.deepEqual(registry.started[0]?.map((c) => `${c.action} ${c.key}`), [`deregister ${key('10.1.0.9')}`]);
    // Meanwhile the old pod is gone and a new pod with the same IP turned Ready.
    source.emit({ type: 'delete', pod: old });
    source.emit({ type: 'upsert', pod: makePod({ uid: 'new', name: 'new', podIPs: ['10.1.0.9'], creationTimestamp: '2024-01-02T00:00:00Z' }) });
    open();
    await controller.whenIdle();
    // The key was never deleted: it is the very entry written for the old pod, now claimed by the new one.
    assert.deepEqual(registry.kv.get(key('10.1.0.9')), registered);
    assert.ok(registry.applied.every((batch) => batch.every((c) => c.action !== 'deregister')), 'no deregistration reached etcd');
    const dropped = records.filter((r) => r.action === 'deregister');
    assert.deepEqual(dropped.map((r) => [r.outcome, r.pod]), [['error', 'default/old']]);
    assert.match(dropped[0]!.reason, /superseded/);
    await controller.stop();
  });

  it('records a registration as written when its attempt was applied but answered by a reset, and a read found it before the retry', async (t) => {
    const { source, registry, controller, records } = setup(t);
    await controller.start();
    await controller.whenIdle();
    let open = (): void => {};
    registry.gate = new Promise<void>((resolve) => { open = resolve; });
    registry.retryAfterGate = true;
    source.emit({ type: 'upsert', pod: makePod({ uid: 'a', name: 'a', podIPs: ['10.1.0.7'] }) });
    await waitUntil(() => registry.started.some((batch) => batch.some((c) => c.key === key('10.1.0.7'))), 2000);
    // The attempt reached etcd; its answer did not (the connection was reset).
    registry.put(key('10.1.0.7'), '10.1.0.7:86', registry.lease);
    // A reconcile reads the key while the registry waits to retry; then the retry is no longer planned.
    const reads = registry.scopedReads + registry.fullReads;
    const reconcile = controller.reconcileNow('periodic');
    await waitUntil(() => registry.scopedReads + registry.fullReads > reads, 2000);
    open();
    await reconcile;
    await controller.whenIdle();
    const audited = records.filter((r) => r.key === key('10.1.0.7'));
    assert.deepEqual(audited.map((r) => [r.action, r.outcome]), [['register', 'ok']], 'one record, ok: etcd changed once');
    assert.match(audited[0]!.reason, /applied by an attempt whose answer was lost/);
    assert.ok(registry.applied.every((batch) => batch.every((c) => c.key !== key('10.1.0.7'))), 'no second write');
    await controller.stop();
  });

  /**
   * A registration whose first attempt is answered by a reset (`applied`: it reached etcd, with
   * its directory marker), then dropped as superseded: its pod stopped serving before the retry.
   */
  async function supersededRegistration(t: TestContext, ip: string, applied: boolean): Promise<ReturnType<typeof setup>> {
    const fixture = setup(t);
    const { source, registry, controller } = fixture;
    await controller.start();
    await controller.whenIdle();
    let open = (): void => {};
    registry.gate = new Promise<void>((resolve) => { open = resolve; });
    registry.retryAfterGate = true;
    const pod = makePod({ uid: 'a', name: 'a', podIPs: [ip] });
    source.emit({ type: 'upsert', pod });
    await waitUntil(() => registry.started.some((batch) => batch.some((c) => c.key === key(ip))), 2000);
    if (applied) {
      registry.put(key(ip), `${ip}:86`, registry.lease);
      registry.marked.add(keyDirectory('/', key(ip)));
    }
    source.emit({ type: 'upsert', pod: { ...pod, terminating: true, ready: false } });
    open();
    await controller.whenIdle();
    registry.gate = undefined;
    registry.retryAfterGate = false;
    return fixture;
  }

  it('records a superseded registration as written, late, when a later read finds what its lost attempt applied', async (t) => {
    const { registry, controller, records } = await supersededRegistration(t, '10.1.0.8', true);
    // The next read finds the key; the reconcile deletes it.
    await controller.reconcileNow('periodic');
    await controller.whenIdle();
    assert.ok(!registry.kv.has(key('10.1.0.8')));
    const audited = records.filter((r) => r.key === key('10.1.0.8')).map((r) => [r.action, r.outcome]);
    // etcd changed twice (the lost put, the delete): two ok records, besides the superseded one.
    assert.deepEqual(audited, [['register', 'error'], ['register', 'ok'], ['deregister', 'ok']]);
    assert.match(records.find((r) => r.key === key('10.1.0.8') && r.outcome === 'ok' && r.action === 'register')!.reason, /applied by an attempt whose answer was lost; found by a later read/);
    await controller.stop();
  });

  it('forgets a superseded registration that a later read shows was never applied', async (t) => {
    const { source, controller, records } = await supersededRegistration(t, '10.1.0.6', false);
    await controller.reconcileNow('periodic');
    // The same key written later, for a new pod, is that pod's registration alone.
    source.emit({ type: 'upsert', pod: makePod({ uid: 'b', name: 'b', podIPs: ['10.1.0.6'] }) });
    await controller.whenIdle();
    await controller.reconcileNow('periodic');
    assert.deepEqual(records.filter((r) => r.key === key('10.1.0.6')).map((r) => [r.action, r.outcome, r.pod]), [['register', 'error', 'default/a'], ['register', 'ok', 'default/b']]);
    await controller.stop();
  });

  it('keeps a change the registry asks about before a retry when it is still planned', async (t) => {
    const { source, registry, controller } = setup(t);
    registry.retryAfterGate = true;
    await controller.start();
    const pod = makePod({ uid: 'a', name: 'a', podIPs: ['10.1.0.1'] });
    source.emit({ type: 'upsert', pod });
    await controller.whenIdle();
    source.emit({ type: 'upsert', pod: { ...pod, terminating: true } });
    await controller.whenIdle();
    assert.ok(!registry.kv.has(key('10.1.0.1')));
    assert.deepEqual(registry.applied.map((batch) => batch.map((c) => c.action)), [['register'], ['deregister']]);
  });

  it('removes orphans on our lease, leaves foreign keys alone and audits each once', async (t) => {
    const { source, registry, controller, records } = setup(t);
    // A pod wants the key that another tool wrote without a lease: skipped, never overwritten.
    source.initial.push(makePod({ uid: 'b', name: 'b', podIPs: ['10.9.0.2'] }));
    registry.put(key('10.9.0.1'), '10.9.0.1:86', '100');
    registry.put(key('10.9.0.2'), '10.9.0.2:86', '0');
    registry.put(key('10.9.0.3'), '10.9.0.3:86', '555');
    const report = await controller.start();
    assert.deepEqual(report.plan.changes.map((c) => [c.action, c.key]), [['orphan-delete', key('10.9.0.1')]]);
    assert.deepEqual([...registry.kv.keys()].sort(), [key('10.9.0.2'), key('10.9.0.3')]);
    await controller.reconcileNow('again');
    assert.equal(records.filter((r) => r.action === 'orphan-delete').length, 1);
    assert.equal(registry.kv.get(key('10.9.0.2'))?.value, '10.9.0.2:86');
    assert.equal(registry.kv.get(key('10.9.0.2'))?.lease, '0');
    assert.deepEqual(records.filter((r) => r.action === 'skip').map((r) => r.key), [key('10.9.0.2')], 'one skip record per claimed foreign key, not per pass');
    await controller.stop();
  });

  it('forgets a contested key once nobody claims it, and audits a new claim again', async (t) => {
    const { source, registry, controller, records } = setup(t);
    const claimant = makePod({ uid: 'c', name: 'c', podIPs: ['10.9.1.2'] });
    source.initial.push(claimant);
    registry.put(key('10.9.1.2'), '10.9.1.2:86', '0');
    await controller.start();
    source.emit({ type: 'delete', pod: claimant });
    await controller.whenIdle();
    await controller.reconcileNow('after the claimant left');
    source.emit({ type: 'upsert', pod: { ...claimant, uid: 'c2' } });
    await controller.whenIdle();
    await controller.reconcileNow('a new claimant');
    const skips = records.filter((r) => r.action === 'skip' && r.key === key('10.9.1.2'));
    assert.deepEqual(skips.map((r) => r.podUid), ['c', 'c2']);
    await controller.stop();
  });

  it('refuses a reconcile that would delete more than the allowed share', async (t) => {
    const { registry, controller } = setup(t, { maxDeleteShare: 0.5 });
    for (let i = 1; i <= 4; i++) registry.put(key(`10.9.0.${i}`), `10.9.0.${i}:86`, '100');
    const report = await controller.start();
    assert.equal(report.outcome, 'refused');
    assert.equal(report.refused.length, 4);
    assert.equal(registry.kv.size, 4, 'nothing deleted');
    await controller.stop();
  });

  it('dry-run plans and audits but writes nothing', async (t) => {
    const { source, registry, controller, records } = setup(t, { dryRun: true });
    registry.put(key('10.9.0.1'), '10.9.0.1:86', '100');
    source.initial.push(makePod({ uid: 'a', name: 'a', podIPs: ['10.1.0.1'] }));
    const report = await controller.runOnce();
    assert.deepEqual(report.plan.changes.map((c) => c.action).sort(), ['orphan-delete', 'register']);
    assert.equal(registry.applied.length, 0);
    assert.ok(records.some((r) => r.action === 'register' && r.outcome === 'dry-run'));
    assert.ok(records.some((r) => r.action === 'orphan-delete' && r.outcome === 'dry-run'));
  });

  it('re-plans a conflicting write against the real state and then leaves the key alone', async (t) => {
    const { source, registry, controller, records } = setup(t);
    await controller.start();
    // Another tool writes the key after our last read: our register conflicts.
    registry.put(key('10.1.0.1'), 'sidecar', '0');
    source.emit({ type: 'upsert', pod: makePod({ uid: 'a', name: 'a', podIPs: ['10.1.0.1'] }) });
    await controller.whenIdle();
    assert.equal(registry.kv.get(key('10.1.0.1'))?.value, 'sidecar');
    assert.ok(records.some((r) => r.action === 'register' && r.outcome === 'error'));
    assert.ok(records.some((r) => r.action === 'skip' && r.key === key('10.1.0.1')));
    await controller.stop();
  });

  it('skips a full reconcile while the pod cache is not synced', async (t) => {
    const { source, registry, controller } = setup(t);
    await controller.start();
    registry.put(key('10.9.0.1'), '10.9.0.1:86', '100');
    source.isSynced = false;
    const report = await controller.reconcileNow('test');
    assert.equal(report.outcome, 'skipped');
    assert.ok(registry.kv.has(key('10.9.0.1')));
    await controller.stop();
  });

  it('counts keys on adoptable leases as owned, as the plan does (delete valve, owned-keys metric)', async (t) => {
    const { registry, controller } = setup(t, { policy: 'upsert-only' });
    await controller.start();
    registry.adoptable.add('100');
    registry.put(key('10.9.0.1'), '10.9.0.1:86', '100');
    registry.put(key('10.9.0.2'), '10.9.0.2:86', '999');
    await controller.reconcileNow('read the keys');
    assert.equal(controller.ownedKeyCount(), 1, 'the key on our earlier lease is ours; the foreign one is not');
    await controller.stop();
  });

  it('moves keys to a new lease after the lease was replaced', async (t) => {
    const { source, registry, controller } = setup(t);
    source.initial.push(makePod({ uid: 'a', name: 'a', podIPs: ['10.1.0.1'] }));
    await controller.start();
    registry.adoptable.add('100');
    registry.lease = '200';
    registry.emit('leaseChanged', { previous: '100', current: '200' });
    await controller.reconcileNow('wait for the requested one');
    await controller.reconcileNow('and settle');
    assert.equal(registry.kv.get(key('10.1.0.1'))?.lease, '200');
    await controller.stop();
  });

  it('steps down on a lost term (writes nothing, keeps its cache), campaigns again and catches up once re-elected', async (t) => {
    const leadership = new FakeLeadership();
    const { source, registry, controller } = setup(t, {}, undefined, leadership);
    source.initial.push(makePod({ uid: 'a', name: 'a', podIPs: ['10.1.0.1'] }));
    const started = controller.start();
    await until('the first campaign', () => leadership.campaigns === 1);
    assert.equal((await controller.reconcileNow('probe')).outcome, 'skipped', 'a standby until elected');
    leadership.elect();
    await started;
    await controller.whenIdle();
    assert.ok(registry.kv.has(key('10.1.0.1')));
    assert.equal(registry.fences.at(-1)?.createRevision, '1');

    leadership.lose('campaign lease lost');
    assert.equal((await controller.reconcileNow('probe')).outcome, 'skipped', 'stepped down at once');
    await until('a new campaign', () => leadership.campaigns === 2);
    const writes = registry.applied.length;
    source.emit({ type: 'upsert', pod: makePod({ uid: 'b', name: 'b', podIPs: ['10.1.0.2'] }) });
    source.emit({ type: 'upsert', pod: makePod({ uid: 'a', name: 'a', podIPs: ['10.1.0.1'], ready: false }) });
    await controller.whenIdle();
    assert.equal(registry.applied.length, writes, 'a standby writes nothing');
    assert.equal((await controller.reconcileNow('periodic')).outcome, 'skipped');
    assert.equal(controller.notReadyReason(), undefined, 'a standby with a synced cache and a healthy lease is ready');

    leadership.elect();
    await until('caught up after re-election', () => registry.kv.has(key('10.1.0.2')) && !registry.kv.has(key('10.1.0.1')));
    assert.equal((await controller.reconcileNow('probe')).outcome, 'ok', 'leads again');
    assert.equal(registry.fences.at(-1)?.createRevision, '2', 'writes carry the new term\'s fence');
    await controller.stop();
  });

  it('reports an invalid pod once with a Warning event and an audit skip', async (t) => {
    const { source, registry, controller, records, events } = setup(t);
    await controller.start();
    const bad = makePod({ uid: 'x', name: 'x', ann: { port: 'http-nope' } });
    source.emit({ type: 'upsert', pod: bad });
    source.emit({ type: 'upsert', pod: { ...bad, resourceVersion: '2' } });
    await controller.whenIdle();
    assert.equal(registry.kv.size, 0);
    assert.equal(records.filter((r) => r.action === 'skip' && r.podUid === 'x').length, 1);
    assert.deepEqual(events, ['Warning InvalidRegistration default/x']);
    await controller.stop();
  });
});

describe('Controller with service grants', () => {
  const searchPod = (uid: string, namespace: string, ip: string): SlimPod =>
    makePod({ uid, name: uid, namespace, podIPs: [ip], ann: { service: 'search' } });

  it('strict: refuses an ungranted claim (no key, one Warning event, one audit skip) and leaves the granted team\'s key alone', async (t) => {
    const { source, registry, controller, records, events, namespaces } = setup(t, {}, 'strict');
    namespaces.initial.push({ type: 'upsert', name: 'team-a', value: 'search' }, { type: 'upsert', name: 'team-b', value: 'web' });
    source.initial.push(searchPod('a', 'team-a', '10.1.0.1'));
    await controller.start();
    const granted = registry.kv.get(key('10.1.0.1'));
    assert.equal(granted?.value, '10.1.0.1:86');
    const rogue = searchPod('b', 'team-b', '10.1.0.2');
    source.emit({ type: 'upsert', pod: rogue });
    source.emit({ type: 'upsert', pod: { ...rogue, resourceVersion: '2' } });
    await controller.whenIdle();
    await controller.reconcileNow('test');
    assert.deepEqual([...registry.kv.keys()], [key('10.1.0.1')]);
    assert.deepEqual(registry.kv.get(key('10.1.0.1')), granted, 'same value, lease and modRevision');
    const skips = records.filter((r) => r.action === 'skip');
    assert.equal(skips.length, 1);
    assert.equal(skips[0]?.pod, 'team-b/b');
    assert.equal(skips[0]?.key, null);
    assert.match(skips[0]?.reason ?? '', /service "search" is not granted to namespace "team-b".*not registered: \/search_PRE\/10\.1\.0\.2-86/);
    assert.deepEqual(events.filter((e) => e.startsWith('Warning')), ['Warning ServiceNotGranted team-b/b']);
  });

  it('strict: granting registers the namespace\'s pods, revoking deregisters them (naming the pod)', async (t) => {
    const { source, registry, controller, records, namespaces } = setup(t, {}, 'strict');
    namespaces.initial.push({ type: 'upsert', name: 'team-b', value: undefined });
    source.initial.push(searchPod('b', 'team-b', '10.1.0.2'), makePod({ uid: 'other', name: 'other', namespace: 'team-c', podIPs: ['10.1.0.3'], ann: { service: 'search' } }));
    await controller.start();
    assert.equal(registry.kv.size, 0);
    namespaces.emit({ type: 'upsert', name: 'team-b', value: 'web, search' });
    await controller.whenIdle();
    assert.deepEqual([...registry.kv.keys()], [key('10.1.0.2')]);
    namespaces.emit({ type: 'upsert', name: 'team-b', value: 'web' });
    await controller.whenIdle();
    assert.equal(registry.kv.size, 0);
    const deregister = records.find((r) => r.action === 'deregister');
    assert.equal(deregister?.pod, 'team-b/b');
    assert.match(deregister?.reason ?? '', /not granted to namespace "team-b" \(--service-grants strict\)/);
    // Refused again after the revoke: audited once more (the claim was granted in between).
    assert.equal(records.filter((r) => r.action === 'skip').length, 2);
  });

  it('strict: an unknown namespace holds (never registers, never deregisters); static grants need no namespace', async (t) => {
    const { source, registry, controller, records, namespaces } = setup(t, {}, 'strict');
    namespaces.initial.push({ type: 'upsert', name: 'team-a', value: 'search' });
    source.initial.push(searchPod('a', 'team-a', '10.1.0.1'), searchPod('p', 'platform', '10.1.0.9'));
    await controller.start();
    assert.deepEqual([...registry.kv.keys()].sort(), [key('10.1.0.1'), key('10.1.0.9')]);
    // The namespace vanishes from the cache (deleted, or a relist raced): its pod keeps its key.
    namespaces.emit({ type: 'delete', name: 'team-a' });
    await controller.whenIdle();
    await controller.reconcileNow('test');
    assert.ok(registry.kv.has(key('10.1.0.1')));
    // A pod in a namespace not seen yet is neither registered nor refused...
    source.emit({ type: 'upsert', pod: searchPod('n', 'new-ns', '10.1.0.5') });
    await controller.whenIdle();
    assert.ok(!registry.kv.has(key('10.1.0.5')));
    assert.equal(records.filter((r) => r.action === 'skip').length, 0);
    // ...until the namespace arrives with the grant.
    namespaces.emit({ type: 'upsert', name: 'new-ns', value: 'search' });
    await controller.whenIdle();
    assert.ok(registry.kv.has(key('10.1.0.5')));
  });

  it('strict: waits for the namespaces before judging any pod', async (t) => {
    const { source, registry, controller, namespaces } = setup(t, {}, 'strict');
    let list: () => void = () => undefined;
    namespaces.listed = new Promise((resolve) => { list = resolve; });
    namespaces.initial.push({ type: 'upsert', name: 'team-a', value: 'search' });
    source.initial.push(searchPod('a', 'team-a', '10.1.0.1'));
    const started = controller.start();
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(source.pods.size, 0, 'the pod source has not started');
    list();
    await started;
    assert.ok(registry.kv.has(key('10.1.0.1')));
  });

  it('open: registers an ungranted claim but warns once (log, Warning event, audit reason)', async (t) => {
    const { source, registry, controller, records, events, namespaces } = setup(t, {}, 'open');
    namespaces.initial.push({ type: 'upsert', name: 'team-b', value: undefined });
    source.initial.push(searchPod('b', 'team-b', '10.1.0.2'));
    await controller.start();
    const pod = searchPod('b', 'team-b', '10.1.0.2');
    source.emit({ type: 'upsert', pod: { ...pod, resourceVersion: '3' } });
    await controller.whenIdle();
    assert.equal(registry.kv.get(key('10.1.0.2'))?.value, '10.1.0.2:86');
    const register = records.filter((r) => r.action === 'register');
    assert.equal(register.length, 1);
    assert.match(register[0]?.reason ?? '', /warning: service "search" is not granted to namespace "team-b" \(allowed by --service-grants open/);
    assert.deepEqual(events.filter((e) => e.startsWith('Warning')), ['Warning ServiceNotGranted team-b/b']);
    assert.equal(records.filter((r) => r.action === 'skip').length, 0);
  });
});

/** Node zones as the node source would report them. */
class FakeNodes implements NodeFeed {
  readonly zones = new Map<string, string>();
  #listener: ((event: { readonly name: string }) => void) | undefined;
  listed: Promise<void> = Promise.resolve();
  onChange(listener: (event: { readonly name: string }) => void): void {
    this.#listener = listener;
  }
  async start(): Promise<void> {
    await this.listed;
  }
  stop(): void {}
  set(node: string, zone: string | undefined): void {
    if (zone === undefined) this.zones.delete(node);
    else this.zones.set(node, zone);
    this.#listener?.({ name: node });
  }
}

describe('Controller with node zones', () => {
  function zoneSetup(t: TestContext) {
    const source = new FakeSource();
    const registry = new FakeRegistry();
    const records: AuditRecord[] = [];
    const audit = new AuditLog('test-owner', new Writable({ write: (_chunk, _encoding, callback) => callback() }));
    audit.subscribe((record) => records.push(record));
    const nodes = new FakeNodes();
    const cfg = { ...testConfig, keyTemplate: '/{zone}/{service}_{environment}/{ip}-{port}', valueFormat: 'json' as const };
    const controller = new Controller(
      {
        source, registry, audit, nodes,
        desired: new DesiredState(cfg, { zoneOf: (node) => nodes.zones.get(node) }),
        events: { record: () => undefined },
        metrics: undefined, logger: pino({ level: 'silent' }),
      },
      options,
    );
    t.after(() => controller.stop());
    return { source, registry, records, nodes, controller };
  }
  const zoneKey = (zone: string, ip: string): string => `/${zone}/search_PRE/${ip}-86`;
  const zoneOfValue = (value: string | undefined): unknown => (JSON.parse(value ?? '{}') as { zone?: unknown }).zone;

  it('waits for the nodes before listing pods, then registers with the zone', async (t) => {
    const { source, registry, nodes, controller } = zoneSetup(t);
    let list: () => void = () => undefined;
    nodes.listed = new Promise((resolve) => { list = resolve; });
    source.initial.push(makePod({ uid: 'a', name: 'a', nodeName: 'n1', podIPs: ['10.1.0.1'] }));
    const started = controller.start();
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(source.pods.size, 0, 'the pod source has not started');
    nodes.zones.set('n1', 'zone-a');
    list();
    await started;
    assert.deepEqual([...registry.kv.keys()], [zoneKey('zone-a', '10.1.0.1')]);
    assert.equal(zoneOfValue(registry.kv.get(zoneKey('zone-a', '10.1.0.1'))?.value), 'zone-a');
  });

  it('a node zone change re-maps only that node\'s pods: the key moves and the value follows', async (t) => {
    const { source, registry, records, nodes, controller } = zoneSetup(t);
    nodes.zones.set('n1', 'zone-a');
    nodes.zones.set('n2', 'zone-b');
    source.initial.push(
      makePod({ uid: 'a', name: 'a', nodeName: 'n1', podIPs: ['10.1.0.1'] }),
      makePod({ uid: 'b', name: 'b', nodeName: 'n2', podIPs: ['10.1.0.2'] }),
    );
    await controller.start();
    const before = registry.applied.length;
    records.length = 0;
    nodes.set('n1', 'zone-c');
    await controller.whenIdle();
    assert.deepEqual([...registry.kv.keys()].sort(), [zoneKey('zone-b', '10.1.0.2'), zoneKey('zone-c', '10.1.0.1')]);
    assert.equal(zoneOfValue(registry.kv.get(zoneKey('zone-c', '10.1.0.1'))?.value), 'zone-c');
    assert.deepEqual(
      records.map((r) => `${r.action} ${r.key ?? ''} ${r.pod ?? ''}`).sort(),
      // The released key is claimed by nobody any more: removed like any key a pod stopped mapping to.
      [`orphan-delete ${zoneKey('zone-a', '10.1.0.1')} `, `register ${zoneKey('zone-c', '10.1.0.1')} default/a`],
      'pod b on the other node is untouched',
    );
    assert.ok(registry.applied.length > before);
  });

  it('a node that vanishes from the cache holds its pods\' keys (never deregisters them)', async (t) => {
    const { source, registry, nodes, controller } = zoneSetup(t);
    nodes.zones.set('n1', 'zone-a');
    source.initial.push(makePod({ uid: 'a', name: 'a', nodeName: 'n1', podIPs: ['10.1.0.1'] }));
    await controller.start();
    nodes.set('n1', undefined);
    await controller.whenIdle();
    const report = await controller.reconcileNow('test');
    assert.equal(report.plan.changes.length, 0);
    assert.deepEqual([...registry.kv.keys()], [zoneKey('zone-a', '10.1.0.1')]);
    // A new pod on an unknown node waits for it.
    source.emit({ type: 'upsert', pod: makePod({ uid: 'b', name: 'b', nodeName: 'n9', podIPs: ['10.1.0.9'] }) });
    await controller.whenIdle();
    assert.equal(registry.kv.size, 1);
    nodes.set('n9', 'zone-b');
    await controller.whenIdle();
    assert.ok(registry.kv.has(zoneKey('zone-b', '10.1.0.9')));
  });
});
