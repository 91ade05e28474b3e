// The registry against a three-member etcd cluster: one member down must not matter.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Etcd3 } from 'etcd3';
import { freePort } from '../../test/cluster/process.ts';
import { dump, makeRegistry, observer, register, startEtcd, waitUntil, type EtcdServer } from './fixture.test.ts';

describe('three-member etcd cluster', () => {
  const members: EtcdServer[] = [];
  let dir: string;
  let obs: Etcd3;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'registry-cluster-'));
    const names = ['m0', 'm1', 'm2'];
    const ports = await Promise.all(names.map(async () => ({ client: await freePort(), peer: await freePort() })));
    const initialCluster = names.map((n, i) => `${n}=http://127.0.0.1:${ports[i]!.peer}`).join(',');
    for (const [i, name] of names.entries()) {
      members.push(
        await startEtcd({
          dir: join(dir, name),
          name,
          clientPort: ports[i]!.client,
          peerPort: ports[i]!.peer,
          initialCluster,
          waitReady: false,
        }),
      );
    }
    await Promise.all(members.map((m) => m.waitHealthy(30_000)));
    obs = observer(members.flatMap((m) => m.endpoints));
  });

  after(async () => {
    obs?.close();
    for (const m of members) await m.destroy();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  test('one member stopped and restarted: writes, reads and keepalives carry on', async (t) => {
    const endpoints = members.flatMap((m) => m.endpoints);
    const reg = makeRegistry(endpoints, { leaseTtlSeconds: 3, callTimeoutMs: 1_000 });
    await reg.start();
    try {
      const lease = reg.leaseId();
      let lost = 0;
      reg.on('leaseLost', () => lost++);
      assert.ok((await reg.apply([register('/cluster_PRE/a', 'A')])).every((r) => r.outcome === 'ok'));
      for (const victim of members) {
        await victim.kill('SIGKILL');
        const downAt = Date.now();
        const changes = Array.from({ length: 300 }, (_, i) => register(`/cluster_PRE/${victim.name}-${i}`, 'v'));
        const res = await reg.apply(changes);
        assert.deepEqual(res.filter((r) => r.outcome !== 'ok'), []);
        assert.equal((await reg.readAll()).get(`/cluster_PRE/${victim.name}-0`)?.lease, lease);
        await waitUntil('keepalives with a member down', () => (reg.lastKeepaliveAt() ?? 0) > downAt + 1_000, 8_000);
        t.diagnostic(`${victim.name} down: writes and keepalives fine`);
        await victim.start();
      }
      assert.equal(reg.leaseId(), lease);
      assert.equal(lost, 0);
      assert.equal((await dump(obs, '/cluster_PRE/')).size, 901);
      assert.ok(reg.healthy());
    } finally {
      await reg.close();
    }
  });

  test('a member without a leader refuses a write at once (require-leader) instead of holding it until the deadline', async (t) => {
    const [m0, m1, m2] = members as [EtcdServer, EtcdServer, EtcdServer];
    const reg = makeRegistry(m0.endpoints, { leaseTtlSeconds: 10, callTimeoutMs: 5_000, retry: { attempts: 1 } });
    await reg.start();
    try {
      await Promise.all([m1.kill('SIGKILL'), m2.kill('SIGKILL')]);
      await waitUntil('m0 to lose its leader', async () => {
        const res = await fetch(`${m0.metricsUrl}/health`).catch(() => undefined);
        const body = (await res?.json().catch(() => undefined)) as { health?: unknown } | undefined;
        return body?.health === 'false';
      }, 15_000);
      const sentAt = performance.now();
      const [result] = await reg.apply([register('/leaderless_PRE/a', 'A')]);
      const ms = performance.now() - sentAt;
      t.diagnostic(`refused in ${ms.toFixed(0)} ms: ${result?.error ?? ''}`);
      assert.equal(result?.outcome, 'error');
      assert.match(result?.error ?? '', /no leader/);
      assert.ok(ms < 2_000, `answered after ${ms.toFixed(0)} ms; the call deadline is 5 s`);
    } finally {
      await reg.close();
      await Promise.all([m1.start(), m2.start()]);
    }
    assert.equal((await dump(obs, '/leaderless_PRE/')).size, 0);
  });
});
