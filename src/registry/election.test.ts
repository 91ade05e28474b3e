// Leader election against a real etcd behind a loopback proxy that can cut the connection:
// a term lost to a partition ends with 'lost', and the next term is a new campaign whose
// fence shuts out the old one.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Etcd3 } from 'etcd3';
import { makeRegistry, observer, register, startEtcd, startProxy, waitUntil, type EtcdServer, type Proxy } from './fixture.test.ts';
import type { EtcdRegistry } from './index.ts';

const ELECTION_TTL = 2;

describe('leadership', () => {
  let etcd: EtcdServer;
  let proxy: Proxy;
  let registry: EtcdRegistry;
  let obs: Etcd3;

  before(async () => {
    etcd = await startEtcd();
    proxy = await startProxy(etcd.endpoints[0]!);
    obs = observer(etcd.endpoints);
    // A data lease that outlives the partition, so that only the election is at stake.
    registry = makeRegistry([proxy.endpoint], { leaseTtlSeconds: 30 });
    await registry.start();
  });

  after(async () => {
    await registry?.close();
    obs?.close();
    await proxy?.close();
    await etcd?.destroy();
  });

  test('a partition past the election TTL ends the term with "lost"; a new campaign after the heal is elected with a newer fence, and the old fence is refused', async () => {
    const first = registry.leadership('replica-a', ELECTION_TTL);
    const oldFence = await first.campaign();
    const lost = new Promise<string>((resolve) => first.once('lost', resolve));
    proxy.pause();
    const reason = await lost;
    assert.equal(first.isLeader(), false, 'no fence once the term is lost');
    assert.match(reason, /lease|expired|lost/i);
    proxy.resume();
    // The old term is given up (never throws), then a new one starts: elected without waiting behind a stale key.
    await first.resign();
    const started = Date.now();
    const second = registry.leadership('replica-a', ELECTION_TTL);
    const newFence = await waitUntil('re-elected after the heal', () => second.campaign(), 15_000);
    assert.ok(BigInt(newFence.createRevision) > BigInt(oldFence.createRevision), 'a new term');
    assert.ok(Date.now() - started < 5_000, `elected ${Date.now() - started} ms after the heal`);
    const key = '/election-test/10.9.0.1-80';
    const [stale] = await registry.apply([register(key, '10.9.0.1:80')], { fence: oldFence });
    assert.equal(stale?.outcome, 'error');
    assert.match(stale?.error ?? '', /fence lost/);
    const [fresh] = await registry.apply([register(key, '10.9.0.1:80')], { fence: newFence });
    assert.equal(fresh?.outcome, 'ok');
    assert.equal((await obs.get(key).string()), '10.9.0.1:80');
    await second.resign();
  });
});
