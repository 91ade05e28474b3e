// Integration tests of the data lease: adoption across restarts, loss and recovery, etcd
// restarts and outages, network partitions. Real etcd on 127.0.0.1, short TTLs.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import type { Etcd3 } from 'etcd3';
import {
  dump,
  makeRegistry,
  nextEvent,
  observer,
  register,
  startEtcd,
  startProxy,
  uniqueOwner,
  waitUntil,
  watchDeletes,
  type EtcdServer,
} from './fixture.test.ts';
import type { LeaseChangedEvent, OwnerRecord } from './index.ts';

const TTL = 2;

async function ownerRecord(obs: Etcd3, ownerId: string): Promise<OwnerRecord | undefined> {
  const raw = await obs.get(`/etcd-registrar/owners/${ownerId}`).string();
  return raw === null ? undefined : (JSON.parse(raw) as OwnerRecord);
}

async function leaseTtl(obs: Etcd3, id: string): Promise<number> {
  return Number((await obs.leaseClient.leaseTimeToLive({ ID: id })).TTL);
}

function keys(prefix: string, n: number): ReturnType<typeof register>[] {
  return Array.from({ length: n }, (_, i) => register(`${prefix}10.3.0.${i}-80`, `10.3.0.${i}:80`));
}

describe('data lease', () => {
  let etcd: EtcdServer;
  let obs: Etcd3;

  before(async () => {
    etcd = await startEtcd();
    obs = observer(etcd.endpoints);
  });

  after(async () => {
    obs?.close();
    await etcd?.destroy();
  });

  test('a registry restarted within the TTL adopts the same lease; no key is deleted', async () => {
    const ownerId = uniqueOwner('adopt');
    const p = '/adopt_PRE/';
    const watch = await watchDeletes(obs, p);
    try {
      const a = makeRegistry(etcd.endpoints, { ownerId, leaseTtlSeconds: TTL });
      await a.start();
      const lease = a.leaseId();
      assert.deepEqual(a.adoptableLeases(), new Set());
      const rec = await ownerRecord(obs, ownerId);
      assert.equal(rec?.leaseId, lease);
      assert.equal(rec?.ownerId, ownerId);
      assert.equal(rec?.ttl, TTL);
      assert.ok(!Number.isNaN(Date.parse(rec?.updatedAt ?? '')));
      // The owner record itself carries no lease.
      assert.equal((await obs.kv.range({ key: Buffer.from(`/etcd-registrar/owners/${ownerId}`) })).kvs[0]?.lease, '0');
      assert.ok((await a.apply(keys(p, 20))).every((r) => r.outcome === 'ok'));
      await a.close();

      const b = makeRegistry(etcd.endpoints, { ownerId, leaseTtlSeconds: TTL });
      await b.start();
      try {
        assert.equal(b.leaseId(), lease);
        assert.ok(b.healthy());
        // Well past the TTL: B's keepalives keep A's keys.
        const seenAck = b.lastKeepaliveAt() ?? 0;
        await waitUntil('three TTLs of keepalives', () => (b.lastKeepaliveAt() ?? 0) > seenAck + 3 * TTL * 1000, 15_000);
        const seen = await dump(obs, p);
        assert.equal(seen.size, 20);
        assert.ok([...seen.values()].every((e) => e.lease === lease));
        assert.deepEqual(watch.deletes, []);
      } finally {
        await b.close();
      }
    } finally {
      await watch.stop();
    }
  });

  test('a controller process SIGKILLed and restarted within the TTL keeps every key', async () => {
    const ownerId = uniqueOwner('sigkill');
    const p = '/sigkill_PRE/';
    const watch = await watchDeletes(obs, p);
    const script = `
      import { EtcdRegistry } from ${JSON.stringify(new URL('./index.ts', import.meta.url).href)};
      import { pino } from 'pino';
      const reg = new EtcdRegistry({ endpoints: ${JSON.stringify(etcd.endpoints)}, ownerId: ${JSON.stringify(ownerId)},
        keyRoot: '/', leaseTtlSeconds: 3, callTimeoutMs: 2000, logger: pino({ level: 'silent' }) });
      await reg.start();
      const res = await reg.apply(Array.from({ length: 50 }, (_, i) => ({ action: 'register', key: '${p}k' + i, value: 'v' + i, expectedLease: '0', reason: 'test' })));
      process.stdout.write(JSON.stringify({ lease: reg.leaseId(), ok: res.filter((r) => r.outcome === 'ok').length }) + '\\n');
      setInterval(() => {}, 1000);
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      const first = await waitUntil('the child to register', () => (out.includes('\n') ? (JSON.parse(out) as { lease: string; ok: number }) : undefined), 15_000);
      assert.equal(first.ok, 50);
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
      const b = makeRegistry(etcd.endpoints, { ownerId, leaseTtlSeconds: 3 });
      await b.start();
      try {
        assert.equal(b.leaseId(), first.lease);
        const t0 = Date.now();
        await waitUntil('two TTLs after the kill', () => Date.now() - t0 > 6_000, 10_000);
        assert.equal((await dump(obs, p)).size, 50);
        assert.deepEqual(watch.deletes, []);
      } finally {
        await b.close();
      }
    } finally {
      child.kill('SIGKILL');
      await watch.stop();
    }
  });

  test('close() does not revoke: without an adopter the keys expire after the TTL', async () => {
    const p = '/expire_PRE/';
    const a = makeRegistry(etcd.endpoints, { leaseTtlSeconds: TTL });
    await a.start();
    await a.apply(keys(p, 3));
    const t0 = Date.now();
    await a.close();
    assert.equal((await dump(obs, p)).size, 3);
    await waitUntil('keys to expire', async () => (await dump(obs, p)).size === 0, 10_000);
    assert.ok(Date.now() - t0 >= 1000, 'keys vanished before the TTL ran out');
  });

  test('revoke() deletes the keys at once (uninstall)', async () => {
    const p = '/revoke_PRE/';
    const a = makeRegistry(etcd.endpoints, { leaseTtlSeconds: 30 });
    await a.start();
    await a.apply(keys(p, 3));
    await a.revoke();
    assert.equal((await dump(obs, p)).size, 0);
  });

  test('a lease revoked behind our back is replaced: leaseLost, leaseChanged, new owner record', async () => {
    const ownerId = uniqueOwner('lost');
    const a = makeRegistry(etcd.endpoints, { ownerId, leaseTtlSeconds: TTL });
    await a.start();
    try {
      const first = a.leaseId();
      const lost = nextEvent<{ lease: string }>(a, 'leaseLost', 5_000);
      const changed = nextEvent<LeaseChangedEvent>(a, 'leaseChanged', 5_000);
      await obs.leaseClient.leaseRevoke({ ID: first });
      assert.equal((await lost).lease, first);
      const ev = await changed;
      assert.equal(ev.previous, first);
      assert.notEqual(ev.current, first);
      assert.equal(a.leaseId(), ev.current);
      assert.ok(a.adoptableLeases().has(first));
      const rec = await ownerRecord(obs, ownerId);
      assert.equal(rec?.leaseId, ev.current);
      assert.deepEqual(rec?.previousLeaseIds, [first]);
      await waitUntil('healthy on the new lease', () => a.healthy() && (a.lastKeepaliveAt() ?? 0) > Date.now() - 1000);
      assert.ok((await leaseTtl(obs, ev.current)) > 0);
      // Writes go to the new lease.
      const res = await a.apply([register('/lost_PRE/k', 'v')]);
      assert.equal(res[0]!.current?.lease, ev.current);
      // It happens again: recovers again.
      const again = nextEvent<LeaseChangedEvent>(a, 'leaseChanged', 5_000);
      await obs.leaseClient.leaseRevoke({ ID: ev.current });
      assert.equal((await again).previous, ev.current);
    } finally {
      await a.close();
    }
  });

  test('a put with a lease that just vanished waits for the new lease and succeeds', async () => {
    const a = makeRegistry(etcd.endpoints, { leaseTtlSeconds: 10 });
    await a.start();
    try {
      const first = a.leaseId();
      await obs.leaseClient.leaseRevoke({ ID: first });
      // Before the next keepalive (TTL/3 away) the registry still believes in `first`.
      const res = await a.apply([register('/vanish_PRE/k', 'v')]);
      assert.equal(res[0]!.outcome, 'ok');
      assert.notEqual(res[0]!.current?.lease, first);
      assert.equal((await dump(obs, '/vanish_PRE/')).get('/vanish_PRE/k')?.lease, a.leaseId());
    } finally {
      await a.close();
    }
  });

  test('two replicas of one owner share the lease and converge on the same replacement', async () => {
    const ownerId = uniqueOwner('ha');
    const a = makeRegistry(etcd.endpoints, { ownerId, leaseTtlSeconds: TTL });
    const b = makeRegistry(etcd.endpoints, { ownerId, leaseTtlSeconds: TTL });
    await a.start();
    await b.start();
    try {
      assert.equal(a.leaseId(), b.leaseId());
      const first = a.leaseId();
      const ca = nextEvent<LeaseChangedEvent>(a, 'leaseChanged', 8_000);
      const cb = nextEvent<LeaseChangedEvent>(b, 'leaseChanged', 8_000);
      await obs.leaseClient.leaseRevoke({ ID: first });
      const [ea, eb] = await Promise.all([ca, cb]);
      assert.equal(ea.current, eb.current);
      assert.equal((await ownerRecord(obs, ownerId))?.leaseId, ea.current);
      // The loser's fresh lease was revoked: only one live lease besides unrelated ones.
      assert.ok((await leaseTtl(obs, ea.current)) > 0);
    } finally {
      await a.close();
      await b.close();
    }
  });

  test('an adopted lease with a shorter granted TTL than configured is still kept alive', async () => {
    const ownerId = uniqueOwner('shortttl');
    const a = makeRegistry(etcd.endpoints, { ownerId, leaseTtlSeconds: TTL });
    await a.start();
    const lease = a.leaseId();
    const b = makeRegistry(etcd.endpoints, { ownerId, leaseTtlSeconds: 30 });
    await b.start({ mode: 'adopt-only' });
    try {
      assert.equal(b.leaseId(), lease);
      await a.close();
      const t0 = Date.now();
      await waitUntil('three short TTLs', () => Date.now() - t0 > 3 * TTL * 1000, 10_000);
      assert.ok((await leaseTtl(obs, lease)) > 0);
      assert.ok(b.healthy());
    } finally {
      await b.close();
    }
  });

  test('the owner record is the source of truth: rewritten when deleted, followed when a peer replaced the lease', async () => {
    const ownerId = uniqueOwner('record');
    const recordKey = `/etcd-registrar/owners/${ownerId}`;
    const a = makeRegistry(etcd.endpoints, { ownerId, leaseTtlSeconds: TTL, ownerRecordCheckMs: 200 });
    await a.start();
    try {
      const first = a.leaseId();
      await obs.delete().key(recordKey);
      await waitUntil('the record to be rewritten', async () => (await ownerRecord(obs, ownerId))?.leaseId === first, 5_000);

      // A peer (e.g. a new replica with another TTL) granted and recorded a new lease.
      const peer = String((await obs.leaseClient.leaseGrant({ TTL: 30 })).ID);
      const changed = nextEvent<LeaseChangedEvent>(a, 'leaseChanged', 5_000);
      await obs.put(recordKey).value(JSON.stringify({ ownerId, leaseId: peer, ttl: 30, updatedAt: new Date().toISOString(), previousLeaseIds: [first] }));
      const ev = await changed;
      assert.deepEqual(ev, { previous: first, current: peer, reason: 'replaced-by-peer' });
      assert.equal(a.leaseId(), peer);
      assert.ok(a.adoptableLeases().has(first));
      // Our old lease is kept alive for the hand-over.
      const t0 = Date.now();
      await waitUntil('two TTLs', () => Date.now() - t0 > 2 * TTL * 1000, 10_000);
      assert.ok((await leaseTtl(obs, first)) > 0);
      assert.equal((await a.apply([register('/record_PRE/k', 'v')]))[0]!.current?.lease, peer);
    } finally {
      await a.close();
    }
  });

  test('a changed TTL gets a new lease; the old one stays alive while keys move', async () => {
    const ownerId = uniqueOwner('ttl');
    const p = '/ttl_PRE/';
    // TTL 3 so that the old lease surely outlives the hand-over even on a loaded machine.
    const a = makeRegistry(etcd.endpoints, { ownerId, leaseTtlSeconds: 3 });
    await a.start();
    const old = a.leaseId();
    await a.apply(keys(p, 2));
    await a.close();
    const b = makeRegistry(etcd.endpoints, { ownerId, leaseTtlSeconds: 5 });
    await b.start();
    try {
      assert.notEqual(b.leaseId(), old);
      assert.ok(b.adoptableLeases().has(old));
      assert.equal(Number((await obs.leaseClient.leaseTimeToLive({ ID: b.leaseId() })).grantedTTL), 5);
      // Longer than the old TTL later the old lease (and its keys) are still there.
      const t0 = Date.now();
      await waitUntil('the old TTL and more', () => Date.now() - t0 > 4_000, 10_000);
      assert.ok((await leaseTtl(obs, old)) > 0);
      assert.equal((await dump(obs, p)).size, 2);
      // The controller moves them with repairs fenced on the old lease.
      const res = await b.apply([...(await b.readAll()).values()]
        .filter((e) => e.key.startsWith(p))
        .map((e) => ({ action: 'repair' as const, key: e.key, value: e.value, expectedLease: e.lease, reason: 'lease moved' })));
      assert.deepEqual(res.map((r) => r.outcome), ['ok', 'ok']);
      assert.ok([...(await dump(obs, p)).values()].every((e) => e.lease === b.leaseId()));
    } finally {
      await b.close();
    }
  });

  test('etcd restarted while running: same lease, keys intact, keepalives resume', async () => {
    const p = '/restart_PRE/';
    const a = makeRegistry(etcd.endpoints, { leaseTtlSeconds: TTL });
    await a.start();
    try {
      const lease = a.leaseId();
      await a.apply(keys(p, 10));
      let changed = false;
      a.on('leaseChanged', () => (changed = true));
      await etcd.stop();
      await etcd.start();
      const restartedAt = Date.now();
      await waitUntil('a keepalive after the restart', () => (a.lastKeepaliveAt() ?? 0) > restartedAt, 10_000);
      assert.ok(a.healthy());
      assert.equal(a.leaseId(), lease);
      assert.equal(changed, false);
      const seen = await dump(obs, p);
      assert.equal(seen.size, 10);
      assert.ok([...seen.values()].every((e) => e.lease === lease));
      assert.equal((await a.apply([register(`${p}after`, 'v')]))[0]!.outcome, 'ok');
    } finally {
      await a.close();
    }
  });

  test('etcd down for longer than the TTL: the registry recovers by itself when it returns', async (t) => {
    const p = '/outage_PRE/';
    const a = makeRegistry(etcd.endpoints, { leaseTtlSeconds: TTL });
    await a.start();
    try {
      const lease = a.leaseId();
      await a.apply(keys(p, 10));
      const changes: LeaseChangedEvent[] = [];
      a.on('leaseChanged', (ev) => changes.push(ev));
      await etcd.stop();
      const downAt = Date.now();
      await waitUntil('unhealthy while etcd is down', () => !a.healthy(), 10_000);
      await waitUntil('3 TTLs of outage', () => Date.now() - downAt > 3 * TTL * 1000, 15_000);
      await etcd.start();
      const upAt = Date.now();
      await waitUntil('healthy again', () => a.healthy() && (a.lastKeepaliveAt() ?? 0) > upAt, 10_000);
      t.diagnostic(`healthy ${Date.now() - upAt} ms after etcd returned`);
      // etcd renews every lease when its leader is elected, so the lease may have survived;
      // if it did not, the registry must have replaced it and said so.
      if (a.leaseId() === lease) {
        assert.deepEqual(changes, []);
        assert.equal((await dump(obs, p)).size, 10);
        t.diagnostic('lease survived the outage (etcd renews leases on leader election)');
      } else {
        assert.equal(changes.at(-1)?.current, a.leaseId());
        t.diagnostic('lease replaced after the outage');
      }
      assert.ok((await leaseTtl(obs, a.leaseId())) > 0);
    } finally {
      await a.close();
    }
  });

  test('partitioned from etcd for longer than the TTL: keys expire, then a new lease and leaseChanged', async (t) => {
    const p = '/partition_PRE/';
    const proxy = await startProxy(etcd.endpoints[0]!);
    const a = makeRegistry([proxy.endpoint], { leaseTtlSeconds: TTL, callTimeoutMs: 1000 });
    const watch = await watchDeletes(obs, p);
    try {
      await a.start();
      const lease = a.leaseId();
      await a.apply(keys(p, 5));
      proxy.pause();
      await waitUntil('etcd to expire the keys', () => watch.deletes.length === 5, 15_000);
      await waitUntil('unhealthy', () => !a.healthy(), 5_000);
      assert.ok((await leaseTtl(obs, lease)) <= 0);
      const changed = nextEvent<LeaseChangedEvent>(a, 'leaseChanged', 10_000);
      const resumedAt = Date.now();
      proxy.resume();
      const ev = await changed;
      t.diagnostic(`new lease ${Date.now() - resumedAt} ms after the partition healed`);
      assert.equal(ev.previous, lease);
      assert.equal(ev.current, a.leaseId());
      assert.ok(a.adoptableLeases().has(lease));
      await waitUntil('healthy', () => a.healthy(), 5_000);
      // The controller re-puts everything; here: the registrations come back on the new lease.
      const res = await a.apply(keys(p, 5));
      assert.ok(res.every((r) => r.outcome === 'ok'));
      assert.ok([...(await dump(obs, p)).values()].every((e) => e.lease === ev.current));
    } finally {
      await a.close();
      await watch.stop();
      await proxy.close();
    }
  });

  test('keepalives keep flowing under a sustained batched write load', async (t) => {
    const a = makeRegistry(etcd.endpoints, { leaseTtlSeconds: TTL, maxInflightTxns: 8 });
    await a.start();
    try {
      const acks: number[] = [];
      let lost = 0;
      a.on('keepalive', (at) => acks.push(at));
      a.on('leaseLost', () => lost++);
      const t0 = Date.now();
      let written = 0;
      for (let round = 0; Date.now() - t0 < 3 * TTL * 1000; round++) {
        const batch = Array.from({ length: 5_000 }, (_, i) => register(`/load_PRE/r${round}/10.4.${i >> 8}.${i & 255}-80`, 'v'));
        const res = await a.apply(batch);
        assert.ok(res.every((r) => r.outcome === 'ok'));
        written += batch.length;
        const del = await a.apply(batch.map((c) => ({ ...c, action: 'deregister' as const, expectedLease: a.leaseId() })));
        assert.ok(del.every((r) => r.outcome === 'ok'));
      }
      const elapsed = Date.now() - t0;
      const gaps = acks.slice(1).map((x, i) => x - acks[i]!);
      const maxGap = Math.max(...gaps);
      t.diagnostic(`${written} registers + deletes in ${elapsed} ms (${Math.round((2 * written) / (elapsed / 1000))} ops/s); ${acks.length} acks, max gap ${maxGap} ms`);
      assert.equal(lost, 0);
      assert.ok(maxGap < TTL * 1000 * 0.75, `keepalive gap ${maxGap} ms`);
      assert.ok(a.healthy());
    } finally {
      await a.close();
    }
  });

  test('etcd unreachable during apply: every change is an error in bounded time, then it works again', async () => {
    const proxy = await startProxy(etcd.endpoints[0]!);
    const a = makeRegistry([proxy.endpoint], {
      leaseTtlSeconds: 10,
      callTimeoutMs: 300,
      retry: { attempts: 10, baseDelayMs: 50, maxDelayMs: 200, budgetMs: 1_000 },
    });
    try {
      await a.start();
      proxy.pause();
      const changes = Array.from({ length: 1_000 }, (_, i) => register(`/unreach_PRE/k${i}`, 'v'));
      const t0 = Date.now();
      const res = await a.apply(changes);
      const ms = Date.now() - t0;
      assert.ok(res.every((r) => r.outcome === 'error'));
      assert.ok(ms < 4_000, `apply took ${ms} ms with etcd unreachable`);
      assert.equal((await dump(obs, '/unreach_PRE/')).size, 0);
      proxy.resume();
      const again = await a.apply(changes);
      assert.ok(again.every((r) => r.outcome === 'ok'));
    } finally {
      await a.close();
      await proxy.close();
    }
  });

  test("read-only and adopt-only modes never grant a lease; read-only never writes", async () => {
    const ownerId = uniqueOwner('modes');
    const p = '/modes_PRE/';
    // Nobody has ever run for this owner.
    const ro0 = makeRegistry(etcd.endpoints, { ownerId });
    await ro0.start({ mode: 'read-only' });
    assert.equal(ro0.leaseId(), '0');
    await assert.rejects(ro0.apply([register(`${p}x`, 'v')]), /read-only/);
    await ro0.close();
    const ao0 = makeRegistry(etcd.endpoints, { ownerId });
    await ao0.start({ mode: 'adopt-only' });
    assert.equal(ao0.leaseId(), '0');
    const refused = await ao0.apply([register(`${p}x`, 'v')]);
    assert.equal(refused[0]!.outcome, 'error');
    assert.match(refused[0]!.error ?? '', /no live data lease/);
    await ao0.close();
    assert.equal(await ownerRecord(obs, ownerId), undefined);
    assert.equal((await dump(obs, p)).size, 0);

    // With the controller running, both see its lease; adopt-only writes on it.
    const owner = makeRegistry(etcd.endpoints, { ownerId, leaseTtlSeconds: TTL });
    await owner.start();
    try {
      const ro = makeRegistry(etcd.endpoints, { ownerId, leaseTtlSeconds: TTL });
      await ro.start({ mode: 'read-only' });
      assert.equal(ro.leaseId(), owner.leaseId());
      assert.equal(ro.lastKeepaliveAt(), undefined);
      await ro.close();
      const ao = makeRegistry(etcd.endpoints, { ownerId, leaseTtlSeconds: TTL });
      await ao.start({ mode: 'adopt-only' });
      assert.equal(ao.leaseId(), owner.leaseId());
      const res = await ao.apply([register(`${p}a`, 'A')]);
      assert.equal(res[0]!.outcome, 'ok');
      assert.match(res[0]!.revision ?? '', /^[1-9][0-9]*$/);
      await ao.close();
      assert.equal((await dump(obs, p)).get(`${p}a`)?.lease, owner.leaseId());
      assert.equal((await ownerRecord(obs, ownerId))?.leaseId, owner.leaseId());
    } finally {
      await owner.close();
    }
  });

  test('start() fails in bounded time when etcd is unreachable', async () => {
    const proxy = await startProxy(etcd.endpoints[0]!);
    proxy.pause();
    const a = makeRegistry([proxy.endpoint], { callTimeoutMs: 300, retry: { attempts: 3, baseDelayMs: 50, maxDelayMs: 200 } });
    const t0 = Date.now();
    try {
      await assert.rejects(a.start());
      assert.ok(Date.now() - t0 < 10_000);
    } finally {
      await a.close();
      await proxy.close();
    }
  });
});
