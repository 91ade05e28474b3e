// Integration tests of reads and writes against a real etcd on 127.0.0.1.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Etcd3 } from 'etcd3';
import {
  deregister,
  dump,
  makeRegistry,
  observer,
  orphanDelete,
  putForeign,
  register,
  repair,
  startEtcd,
  startProxy,
  type EtcdServer,
} from './fixture.test.ts';
import { RegistryProgrammingError, type EtcdRegistry } from './index.ts';
import type { ScopedRead, UnchangedRead } from './registry.ts';
import type { ReadBasis } from '../types.ts';

describe('EtcdRegistry reads and writes', () => {
  let etcd: EtcdServer;
  let obs: Etcd3;
  let reg: EtcdRegistry;
  let otherLease: string;

  before(async () => {
    etcd = await startEtcd();
    obs = observer(etcd.endpoints);
    reg = makeRegistry(etcd.endpoints, { leaseTtlSeconds: 10 });
    await reg.start();
    otherLease = String((await obs.leaseClient.leaseGrant({ TTL: 600 })).ID);
  });

  after(async () => {
    await reg?.close();
    obs?.close();
    await etcd?.destroy();
  });

  test('register, repair, deregister and orphan-delete write exactly what was asked, on our lease', async () => {
    const lease = reg.leaseId();
    assert.match(lease, /^[1-9][0-9]*$/);
    const p = '/rw_PRE/';
    const reg1 = await reg.apply([register(`${p}10.0.0.1-86`, '10.0.0.1:86'), register(`${p}10.0.0.2-86`, '10.0.0.2:86')]);
    assert.deepEqual(reg1.map((r) => r.outcome), ['ok', 'ok']);
    assert.equal(reg1[0]!.current?.lease, lease);
    assert.deepEqual(
      await dump(obs, p),
      new Map([
        [`${p}10.0.0.1-86`, { value: '10.0.0.1:86', lease }],
        [`${p}10.0.0.2-86`, { value: '10.0.0.2:86', lease }],
      ]),
    );

    const rep = await reg.apply([repair(`${p}10.0.0.1-86`, '10.0.0.1:87', lease)]);
    assert.equal(rep[0]!.outcome, 'ok');
    assert.deepEqual((await dump(obs, p)).get(`${p}10.0.0.1-86`), { value: '10.0.0.1:87', lease });

    const del = await reg.apply([
      deregister(`${p}10.0.0.1-86`, '10.0.0.1:87', lease),
      orphanDelete(`${p}10.0.0.2-86`, '10.0.0.2:86', lease),
    ]);
    assert.deepEqual(del.map((r) => r.outcome), ['ok', 'ok']);
    assert.equal(del[0]!.current, undefined);
    assert.equal((await dump(obs, p)).size, 0);
  });

  test('keys without a lease or on another lease are never changed and come back as conflicts', async () => {
    const lease = reg.leaseId();
    const p = '/foreign_PRE/';
    await obs.put(`${p}nolease`).value('sidecar');
    await obs.put(`${p}otherlease`).value('other').lease(otherLease).exec();
    const before = await dump(obs, p);

    const res = await reg.apply([
      register(`${p}nolease`, 'mine'),
      register(`${p}otherlease`, 'mine'),
      repair(`${p}nolease`, 'mine', lease),
      repair(`${p}otherlease`, 'mine', lease),
      deregister(`${p}nolease`, 'sidecar', lease),
      orphanDelete(`${p}otherlease`, 'other', lease),
    ]);
    assert.deepEqual(res.map((r) => r.outcome), ['conflict', 'conflict', 'conflict', 'conflict', 'conflict', 'conflict']);
    assert.equal(res[0]!.current?.value, 'sidecar');
    assert.equal(res[0]!.current?.lease, '0');
    assert.equal(res[1]!.current?.lease, otherLease);

    // A plan that names a lease which is not ours is refused outright.
    const refused = await reg.apply([
      deregister(`${p}nolease`, 'sidecar', '0'),
      repair(`${p}otherlease`, 'mine', otherLease),
      orphanDelete(`${p}otherlease`, 'other', otherLease),
    ]);
    assert.deepEqual(refused.map((r) => r.outcome), ['error', 'error', 'error']);
    assert.match(refused[0]!.error ?? '', /not a lease of owner/);
    assert.deepEqual(await dump(obs, p), before);
  });

  test('a mixed batch with one conflicting change still applies the others', async () => {
    const lease = reg.leaseId();
    const p = '/mixed_PRE/';
    await obs.put(`${p}taken`).value('sidecar');
    const changes = [
      register(`${p}a`, 'A'),
      register(`${p}taken`, 'mine'),
      register(`${p}b`, 'B'),
      deregister(`${p}missing`, 'x', lease),
      register(`${p}c`, 'C'),
    ];
    const res = await reg.apply(changes);
    assert.deepEqual(res.map((r) => r.outcome), ['ok', 'conflict', 'ok', 'conflict', 'ok']);
    assert.deepEqual(res.map((r) => r.change), changes);
    assert.equal(res[3]!.current, undefined);
    assert.deepEqual(
      await dump(obs, p),
      new Map([
        [`${p}a`, { value: 'A', lease }],
        [`${p}b`, { value: 'B', lease }],
        [`${p}c`, { value: 'C', lease }],
        [`${p}taken`, { value: 'sidecar', lease: '0' }],
      ]),
    );
  });

  test('1,250 keys go in 13 transactions of at most 100 ops and all land on the lease', async () => {
    const lease = reg.leaseId();
    const p = '/bulk_PRE/';
    const changes = Array.from({ length: 1250 }, (_, i) => register(`${p}10.1.${i >> 8}.${i & 255}-80`, `10.1.${i >> 8}.${i & 255}:80`));
    // Put a foreign key in the middle of the 7th transaction.
    await obs.put(changes[640]!.key).value('sidecar');
    const rev0 = Number((await obs.kv.range({ key: Buffer.from('x') })).header.revision);
    const res = await reg.apply(changes);
    const rev1 = Number((await obs.kv.range({ key: Buffer.from('x') })).header.revision);
    assert.equal(res.filter((r) => r.outcome === 'ok').length, 1249);
    assert.equal(res[640]!.outcome, 'conflict');
    // 13 successful transactions, plus one failed attempt for the batch with the conflict
    // (a failed txn does not bump the revision).
    assert.equal(rev1 - rev0, 13);
    const seen = await dump(obs, p);
    assert.equal(seen.size, 1250);
    for (const [i, c] of changes.entries()) {
      assert.deepEqual(seen.get(c.key), i === 640 ? { value: 'sidecar', lease: '0' } : { value: c.value, lease });
    }
  });

  test('10,000 registrations in batched transactions: throughput', async (t) => {
    const p = '/perf_PRE/';
    const changes = Array.from({ length: 10_000 }, (_, i) => register(`${p}10.2.${i >> 8}.${i & 255}-80`, `10.2.${i >> 8}.${i & 255}:80`));
    const t0 = performance.now();
    const res = await reg.apply(changes);
    const ms = performance.now() - t0;
    assert.equal(res.filter((r) => r.outcome === 'ok').length, 10_000);
    t.diagnostic(`10,000 registers in ${ms.toFixed(0)} ms = ${Math.round(10_000 / (ms / 1000))} keys/s`);
    const t1 = performance.now();
    const del = await reg.apply(changes.map((c) => deregister(c.key, c.value, reg.leaseId())));
    const ms2 = performance.now() - t1;
    assert.equal(del.filter((r) => r.outcome === 'ok').length, 10_000);
    t.diagnostic(`10,000 deregisters in ${ms2.toFixed(0)} ms`);
    assert.ok(ms < 10_000, `10,000 registers took ${ms} ms`);
    assert.equal((await dump(obs, p)).size, 0);
  });

  test('the same key twice in one call is applied in order', async () => {
    const lease = reg.leaseId();
    const k = '/dup_PRE/k';
    const res = await reg.apply([register(k, 'v1'), repair(k, 'v2', lease), deregister(k, 'v2', lease), register(k, 'v3')]);
    assert.deepEqual(res.map((r) => r.outcome), ['ok', 'ok', 'ok', 'ok']);
    assert.deepEqual((await dump(obs, '/dup_PRE/')).get(k), { value: 'v3', lease });
  });

  test('keys outside the key root or in the owner-record prefix throw, and nothing is written', async () => {
    const scoped = makeRegistry(etcd.endpoints, { keyRoot: '/scoped' });
    await scoped.start();
    try {
      for (const bad of ['/elsewhere/k', '/scoped', '/scopedX/k', 'scoped/k', '/scoped/\u0000x']) {
        await assert.rejects(scoped.apply([register('/scoped/ok', 'v'), register(bad, 'v')]), RegistryProgrammingError, bad);
      }
      await assert.rejects(reg.apply([register('/etcd-registrar/owners/someone', 'x')]), RegistryProgrammingError);
      assert.equal((await dump(obs, '/scoped')).size, 0);
      assert.equal((await scoped.apply([register('/scoped/ok', 'v')]))[0]!.outcome, 'ok');
    } finally {
      await scoped.close();
    }
  });

  test('a fence that no longer matches fails every change and writes nothing', async () => {
    const fenceKey = '/etcd-registrar/election/leader';
    await obs.put(fenceKey).value('me');
    const createRevision = (await obs.kv.range({ key: Buffer.from(fenceKey) })).kvs[0]!.create_revision;
    const ok = await reg.apply([register('/fence_PRE/a', 'A')], { fence: { key: fenceKey, createRevision } });
    assert.equal(ok[0]!.outcome, 'ok');
    await obs.delete().key(fenceKey);
    await obs.put(fenceKey).value('someone else');
    const changes = Array.from({ length: 250 }, (_, i) => register(`/fence_PRE/k${i}`, 'v'));
    const res = await reg.apply(changes, { fence: { key: fenceKey, createRevision } });
    assert.ok(res.every((r) => r.outcome === 'error' && /fence lost/.test(r.error ?? '')));
    assert.equal((await dump(obs, '/fence_PRE/')).size, 1);
  });

  test('before a retry, a change the caller no longer plans is dropped (superseded), the rest still applied', async () => {
    const p = '/superseded_PRE/';
    const proxy = await startProxy(etcd.endpoints[0]!);
    const a = makeRegistry([proxy.endpoint], { leaseTtlSeconds: 10, callTimeoutMs: 1000 });
    const etcdErrors: string[] = [];
    a.on('etcdError', (e: { op: string; error: string }) => etcdErrors.push(`${e.op} ${e.error}`));
    try {
      await a.start();
      await a.apply([register(`${p}kept`, 'K'), register(`${p}gone`, 'G')]);
      const lease = a.leaseId();
      // etcd unreachable: the first attempt fails; before the retry the caller changed its mind about one key.
      proxy.pause();
      const asked: string[] = [];
      const res = await a.apply([deregister(`${p}kept`, 'K', lease), deregister(`${p}gone`, 'G', lease)], {
        stillPlanned: (change) => {
          asked.push(change.key);
          proxy.resume();
          return change.key !== `${p}kept`;
        },
      });
      assert.deepEqual(res.map((r) => [r.change.key, r.outcome]), [[`${p}kept`, 'superseded'], [`${p}gone`, 'ok']]);
      assert.ok(asked.includes(`${p}kept`) && asked.includes(`${p}gone`), `asked about ${asked.join(', ')}`);
      const left = await dump(obs, p);
      assert.deepEqual([...left.keys()], [`${p}kept`]);
      assert.equal(left.get(`${p}kept`)?.value, 'K');
      assert.ok(etcdErrors.length > 0, 'the failed first attempt was reported');
      assert.ok(etcdErrors.every((e) => !e.includes('superseded')), 'dropping a change is no etcd error');
    } finally {
      await a.close();
      await proxy.close();
    }
  });

  test('readAll pages through foreign keys, pins one revision, and hides owner records', async (t) => {
    const root = '/readall/';
    const scoped = makeRegistry(etcd.endpoints, { keyRoot: root, pageSize: 5_000, leaseTtlSeconds: 10 });
    await scoped.start();
    try {
      const lease = scoped.leaseId();
      const n = 50_000;
      const foreign = Array.from({ length: n }, (_, i) => `${root}svc${i % 50}_PRE/10.9.${(i >> 8) & 255}.${i & 255}-${80 + (i >> 16)}`);
      const tw = performance.now();
      await putForeign(obs, foreign.slice(0, n / 2));
      await putForeign(obs, foreign.slice(n / 2), otherLease);
      t.diagnostic(`wrote ${n} foreign keys in ${(performance.now() - tw).toFixed(0)} ms`);
      await scoped.apply([register(`${root}mine_PRE/a`, 'A')]);
      await obs.put(`${root}zzz`).value('outside?');
      await obs.put('/readallX/k').value('not under root');

      const t0 = performance.now();
      const all = await scoped.readAll();
      const ms = performance.now() - t0;
      t.diagnostic(`readAll of ${all.size} keys in ${ms.toFixed(0)} ms`);
      assert.equal(all.size, n + 2);
      assert.equal(all.get(`${root}mine_PRE/a`)?.lease, lease);
      assert.equal(all.get(foreign[0]!)?.lease, '0');
      assert.equal(all.get(foreign[n - 1]!)?.lease, otherLease);
      assert.equal(all.get(foreign[n - 1]!)?.value, 'foreign');
      assert.ok(!all.has('/readallX/k'));
      assert.ok(ms < 5_000, `readAll took ${ms} ms`);

      // Small pages: same result.
      const paged = makeRegistry(etcd.endpoints, { keyRoot: root, pageSize: 997 });
      await paged.start();
      try {
        const again = await paged.readAll();
        assert.equal(again.size, all.size);
      } finally {
        await paged.close();
      }

      // The default root '/' must hide the owner records.
      const everything = await reg.readAll();
      assert.ok(![...everything.keys()].some((k) => k.startsWith('/etcd-registrar/owners/')));
      assert.ok(everything.has(foreign[7]!));
    } finally {
      await scoped.close();
    }
  });

  test('scoped reads cover the directories our puts marked and the wanted ones, nothing else', async () => {
    const root = '/scopedread/';
    const ownerId = `scoped-${process.pid}`;
    const scoped = makeRegistry(etcd.endpoints, { keyRoot: root, ownerId, leaseTtlSeconds: 10 });
    await scoped.start();
    try {
      const lease = scoped.leaseId();
      await putForeign(obs, Array.from({ length: 300 }, (_, i) => `${root}other_PRE/10.1.0.${i}-80`));
      await obs.put(`${root}wanted_PRE/taken`).value('sidecar');
      const res = await scoped.apply([register(`${root}mine_PRE/a`, 'A'), register(`${root}mine_PRE/b`, 'B'), register(`${root}top`, 'T')]);
      assert.deepEqual(res.map((r) => r.outcome), ['ok', 'ok', 'ok']);
      // The put marked its directory in the same transaction, on the data lease.
      const markers = await dump(obs, `/etcd-registrar/owners/${ownerId}/dirs/`);
      assert.deepEqual(markers, new Map([
        [`/etcd-registrar/owners/${ownerId}/dirs${root}`, { value: root, lease }],
        [`/etcd-registrar/owners/${ownerId}/dirs${root}mine_PRE/`, { value: `${root}mine_PRE/`, lease }],
      ]));

      // A key directly under the root marked the root itself: that is a full read.
      const withRoot = await scoped.readScoped([]);
      assert.deepEqual(withRoot.directories, [root]);
      assert.equal(withRoot.entries.size, 304);

      await scoped.apply([orphanDelete(`${root}top`, 'T', lease)]);
      await obs.delete().key(`/etcd-registrar/owners/${ownerId}/dirs${root}`).exec();
      const read = await scoped.readScoped([`${root}wanted_PRE/taken`, `${root}wanted_PRE/free`]);
      assert.deepEqual(read.directories, [`${root}mine_PRE/`, `${root}wanted_PRE/`]);
      assert.deepEqual([...read.entries.keys()].sort(), [`${root}mine_PRE/a`, `${root}mine_PRE/b`, `${root}wanted_PRE/taken`]);
      assert.equal(read.entries.get(`${root}wanted_PRE/taken`)?.lease, '0');
      assert.equal(read.entries.get(`${root}mine_PRE/a`)?.lease, lease);
      await assert.rejects(scoped.readScoped(['/elsewhere/x']), RegistryProgrammingError);

      // A key of ours whose marker is gone (deleted by hand, or written before markers) is only
      // seen by a full read, and seen by scoped reads again once its directory is marked.
      await obs.delete().key(`/etcd-registrar/owners/${ownerId}/dirs${root}mine_PRE/`).exec();
      assert.equal((await scoped.readScoped([])).entries.size, 0);
      const all = await scoped.readAll();
      assert.equal(all.get(`${root}mine_PRE/a`)?.lease, lease);
      // A full reconcile read sees them too, and keeps only what a scoped read would return.
      const full = await scoped.readScoped([`${root}wanted_PRE/free`], { full: true });
      // Its directories and counts are those of the scoped read it stands for.
      assert.deepEqual(full.directories, [`${root}wanted_PRE/`]);
      assert.deepEqual(full.counts, new Map([[`${root}wanted_PRE/`, 1]]));
      assert.deepEqual([...full.entries.keys()].sort(), [`${root}mine_PRE/a`, `${root}mine_PRE/b`, `${root}wanted_PRE/taken`]);
      assert.equal(await scoped.markDirectories(all.values()), 1, 'only the directory of our keys; foreign ones are not marked');
      assert.equal(await scoped.markDirectories([all.get(`${root}mine_PRE/a`)!]), 0, 'already marked on this lease');
      assert.deepEqual([...(await scoped.readScoped([])).entries.keys()].sort(), [`${root}mine_PRE/a`, `${root}mine_PRE/b`]);
    } finally {
      await scoped.revoke();
    }
    // Markers live on the data lease: revoking it removes them with the keys.
    assert.equal((await dump(obs, `/etcd-registrar/owners/${ownerId}/dirs/`)).size, 0);
  });

  test('a scoped read given the last one\'s basis answers unchanged until a key in those directories is put or deleted', async () => {
    const root = '/unchanged/';
    const scoped = makeRegistry(etcd.endpoints, { keyRoot: root, ownerId: `unchanged-${process.pid}`, leaseTtlSeconds: 10, pageSize: 50 });
    await scoped.start();
    try {
      await putForeign(obs, Array.from({ length: 120 }, (_, i) => `${root}svc_PRE/10.9.0.${i}-80`));
      await scoped.apply([register(`${root}svc_PRE/mine`, 'M')]);
      const wanted = [`${root}other_PRE/wanted`];
      const first = await scoped.readScoped(wanted);
      assert.deepEqual(first.directories, [`${root}other_PRE/`, `${root}svc_PRE/`]);
      assert.equal(first.entries.size, 121, 'read over three pages of 50');
      assert.deepEqual(first.counts, new Map([[`${root}other_PRE/`, 0], [`${root}svc_PRE/`, 121]]));
      const since = async (basis: ReadBasis): Promise<ScopedRead | UnchangedRead> => scoped.readScoped(wanted, { unchangedSince: basis });

      // Writes elsewhere move etcd's revision but change nothing here.
      await obs.put('/elsewhere/x').value('1');
      const second = await since(first);
      assert.ok('unchanged' in second, 'nothing changed in the directories');
      assert.ok(BigInt(second.revision) > BigInt(first.revision));
      assert.ok('unchanged' in await since(second), 'the advanced basis holds too');
      // A full read reports the same directories and counts: its basis serves as well.
      const full = await scoped.readScoped(wanted, { full: true });
      assert.deepEqual([full.directories, full.counts], [first.directories, first.counts]);
      assert.ok('unchanged' in await since(full), 'after a full read');

      // Each kind of change is seen: a foreign put, our own put, a delete, a wanted key appearing.
      const changes: Array<[string, () => Promise<unknown>]> = [
        ['a foreign put into a read directory', () => obs.put(`${root}svc_PRE/10.9.0.200-80`).value('x').exec()],
        ['a value rewritten in place', () => obs.put(`${root}svc_PRE/10.9.0.5-80`).value('changed').exec()],
        ['our own put', () => scoped.apply([register(`${root}svc_PRE/mine2`, 'M2')])],
        ['a delete', () => obs.delete().key(`${root}svc_PRE/10.9.0.7-80`).exec()],
        ['a wanted key created', () => obs.put(`${root}other_PRE/wanted`).value('w').exec()],
      ];
      let basis: ReadBasis = second;
      for (const [what, change] of changes) {
        await change();
        const read = await since(basis);
        assert.ok(!('unchanged' in read), `${what} is seen`);
        assert.ok('unchanged' in await since(read), `after ${what} and a read, unchanged again`);
        basis = read;
      }
      const last = await since(basis);
      assert.ok('unchanged' in last);

      // A directory set that differs (a new wanted directory) is read, not checked.
      const wider = await scoped.readScoped([...wanted, `${root}third_PRE/k`], { unchangedSince: last });
      assert.ok(!('unchanged' in wider));
      assert.ok(wider.entries.has(`${root}other_PRE/wanted`));
    } finally {
      await scoped.revoke();
    }
  });

  test('puts into many directories at once stay within etcd\'s operations per transaction', async () => {
    const root = '/manydirs/';
    const scoped = makeRegistry(etcd.endpoints, { keyRoot: root, leaseTtlSeconds: 10, maxOpsPerTxn: 128 });
    await scoped.start();
    try {
      const changes = Array.from({ length: 300 }, (_, i) => register(`${root}svc${i}_PRE/k`, `v${i}`));
      const res = await scoped.apply(changes);
      assert.deepEqual(new Set(res.map((r) => r.outcome)), new Set(['ok']));
      // Past 256 directories a layout gains nothing from scoped reads: the root is marked instead.
      const read = await scoped.readScoped([]);
      assert.deepEqual(read.directories, [root]);
      assert.equal(read.entries.size, 300);
    } finally {
      await scoped.revoke();
    }
  });
});
