// The controller's picture of etcd: full and scoped reads, writes that land during a read, and
// the directory markers.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import type { CurrentEntry, ReadBasis } from '../types.ts';
import { EtcdMirror } from './mirror.ts';
import type { RegistryPort } from './ports.ts';

const entry = (key: string, lease = '100'): CurrentEntry => ({ key, value: 'v', lease, modRevision: '1' });

/** Only what the mirror asks of the registry; reads answer with `kv`, optionally after `gate`. */
function fakeRegistry() {
  const reads: { full: boolean; wanted: string[]; since?: string | undefined }[] = [];
  let revision = 10;
  const fake = {
    kv: new Map<string, CurrentEntry>(),
    gate: undefined as Promise<void> | undefined,
    markFails: false,
    marked: [] as string[],
    /** Scoped reads given a basis answer "unchanged". */
    unchanged: false,
    reads,
    port: {
      leaseId: () => '100',
      adoptableLeases: () => new Set(['50']),
      async readScoped(wantedKeys: Iterable<string>, options: { full?: boolean; unchangedSince?: ReadBasis | undefined } = {}) {
        reads.push({ full: options.full === true, wanted: [...wantedKeys], since: options.unchangedSince?.revision });
        await fake.gate;
        const basis = { directories: ['/'], revision: String(++revision), counts: new Map([['/', fake.kv.size]]) };
        if (fake.unchanged && options.unchangedSince !== undefined) return { ...basis, unchanged: true };
        return { entries: new Map(fake.kv), ...basis };
      },
      async markDirectories(entries: Iterable<CurrentEntry>) {
        if (fake.markFails) throw new Error('no marker');
        for (const e of entries) fake.marked.push(e.key);
        return 0;
      },
    } as unknown as RegistryPort,
  };
  return fake;
}

const logger = pino({ level: 'silent' });

describe('EtcdMirror', () => {
  it('reads everything first, then only scoped until the interval passed; marks after full reads', async () => {
    const registry = fakeRegistry();
    registry.kv.set('/a', entry('/a'));
    const mirror = new EtcdMirror({ registry: registry.port, metrics: undefined, logger }, 3_600_000);
    await mirror.refresh(['/wanted']);
    await mirror.refresh(['/wanted']);
    assert.deepEqual(registry.reads.map((r) => r.full), [true, false]);
    assert.deepEqual(registry.reads[1]?.wanted, ['/wanted']);
    assert.deepEqual(registry.marked, ['/a'], 'marked once, after the full read');
    mirror.readEverythingNext();
    await mirror.refresh([]);
    assert.equal(registry.reads.at(-1)?.full, true);
  });

  it('gives each scoped read the basis of the last one, and keeps its keys when etcd says nothing changed', async () => {
    const registry = fakeRegistry();
    registry.kv.set('/a', entry('/a'));
    registry.unchanged = true;
    const kept = (): boolean => mirror.get('/a')?.value === 'v';
    const mirror = new EtcdMirror({ registry: registry.port, metrics: undefined, logger }, 3_600_000);
    await mirror.refresh([]);
    // The fake now "reads" nothing; answered unchanged, the mirror keeps what it had.
    registry.kv.clear();
    await mirror.refresh([]);
    await mirror.refresh([]);
    assert.ok(kept());
    // A full read is never replaced by the check, and its basis serves the next scoped read.
    mirror.readEverythingNext();
    await mirror.refresh([]);
    assert.equal(mirror.has('/a'), false, 'the full read emptied it');
    await mirror.refresh([]);
    assert.deepEqual(registry.reads.map((r) => [r.full, r.since]), [[true, undefined], [false, '11'], [false, '12'], [true, undefined], [false, '14']]);
  });

  it('an interval of 0 reads everything every time', async () => {
    const registry = fakeRegistry();
    const mirror = new EtcdMirror({ registry: registry.port, metrics: undefined, logger }, 0);
    await mirror.refresh([]);
    await mirror.refresh([]);
    assert.deepEqual(registry.reads.map((r) => r.full), [true, true]);
  });

  it('keys written while a read runs keep what the writes left', async () => {
    const registry = fakeRegistry();
    registry.kv.set('/stale', entry('/stale'));
    registry.kv.set('/deleted', entry('/deleted'));
    const mirror = new EtcdMirror({ registry: registry.port, metrics: undefined, logger }, 0);
    let release: () => void = () => undefined;
    registry.gate = new Promise((resolve) => { release = resolve; });
    const reading = mirror.refresh([]);
    mirror.noteWrite('/stale');
    mirror.set('/stale', { ...entry('/stale'), value: 'new', modRevision: '9' });
    mirror.noteWrite('/deleted');
    mirror.delete('/deleted');
    release();
    await reading;
    assert.equal(mirror.get('/stale')?.value, 'new');
    assert.equal(mirror.has('/deleted'), false);
    mirror.noteWrite('/late');
    await mirror.refresh([]);
    assert.equal(mirror.has('/late'), false, 'a write noted outside a read changes nothing by itself');
  });

  it('a failed marking makes the next read a full one', async () => {
    const registry = fakeRegistry();
    registry.markFails = true;
    const mirror = new EtcdMirror({ registry: registry.port, metrics: undefined, logger }, 3_600_000);
    await mirror.refresh([]);
    registry.markFails = false;
    await mirror.refresh([]);
    await mirror.refresh([]);
    assert.deepEqual(registry.reads.map((r) => r.full), [true, true, false]);
  });

  it('counts our keys by the one ownership rule (current and adoptable leases)', async () => {
    const registry = fakeRegistry();
    for (const [key, lease] of [['/ours', '100'], ['/adoptable', '50'], ['/foreign', '7'], ['/plain', '0']] as const) registry.kv.set(key, entry(key, lease));
    const mirror = new EtcdMirror({ registry: registry.port, metrics: undefined, logger }, 0);
    await mirror.refresh([]);
    assert.equal(mirror.ownedKeyCount(), 2);
  });
});
