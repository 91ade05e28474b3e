// The registry etcd options of the local cluster: three members with leader helpers.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import { envFileText, startCluster, type Cluster } from './cluster.ts';

function parseEnvText(text: string): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const [, key, value] of text.matchAll(/^export (\w+)='([^']*)'$/gm)) {
    if (key !== undefined && value !== undefined) vars[key] = value;
  }
  return vars;
}

describe('registry etcd with three members', () => {
  let cluster: Cluster;
  let client: Etcd3;

  before(async () => {
    cluster = await startCluster({ registryMembers: 3, nodes: 1 });
    client = new Etcd3({ hosts: cluster.registryEndpoints });
  });

  after(async () => {
    client?.close();
    await cluster?.stop();
  });

  it('runs three healthy members listed in registryEndpoints and DIR/env', async () => {
    assert.equal(cluster.registryMembers.length, 3);
    assert.equal(cluster.registry, cluster.registryMembers[0]);
    assert.deepEqual(cluster.registry.endpoints, [cluster.registryEndpoints[0]]);
    assert.equal(new Set(cluster.registryEndpoints).size, 3);
    for (const url of cluster.registryEndpoints) {
      assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
      const res = await fetch(`${url}/health`);
      assert.deepEqual(await res.json(), { health: 'true', reason: '' });
    }
    const members = await client.cluster.memberList({});
    assert.deepEqual(members.members.map((m) => m.name).sort(), ['registry-0', 'registry-1', 'registry-2']);
    const env = parseEnvText(envFileText(cluster));
    assert.equal(env['ETCD_ENDPOINTS'], cluster.registryEndpoints.join(','));
    assert.equal(env['ETCD_REGISTRAR_ETCD_ENDPOINTS'], cluster.registryEndpoints.join(','));
    assert.equal(env['ETCDCTL_ENDPOINTS'], cluster.registryEndpoints.join(','));
    const names = cluster.processes().map((p) => p.name);
    assert.deepEqual(names.filter((n) => n.startsWith('etcd-registry')), ['etcd-registry-0', 'etcd-registry-1', 'etcd-registry-2']);
  });

  it('finds the leader and moves leadership to a chosen member and to any other', async () => {
    const leader = await cluster.registryLeader();
    assert.ok(cluster.registryMembers.includes(leader));
    const target = cluster.registryMembers.find((m) => m !== leader);
    assert.ok(target !== undefined);
    assert.equal(await cluster.moveRegistryLeader(target), target);
    assert.equal(await cluster.registryLeader(), target);
    const next = await cluster.moveRegistryLeader();
    assert.notEqual(next, target);
    assert.equal(await cluster.registryLeader(), next);
  });

  it('keeps serving with the leader killed, and takes the member back after a restart', async () => {
    await client.put('/chaos/before').value('1');
    const leader = await cluster.registryLeader();
    await leader.kill('SIGKILL');
    try {
      assert.equal(leader.isRunning(), false);
      const successor = await cluster.registryLeader();
      assert.notEqual(successor, leader);
      await client.put('/chaos/during').value('2');
      assert.equal(await client.get('/chaos/during').string(), '2');
    } finally {
      await leader.start();
    }
    // The restarted member catches up with what was written while it was down.
    const only = new Etcd3({ hosts: leader.endpoints });
    try {
      assert.equal(await only.get('/chaos/during').string(), '2');
      assert.equal(await only.get('/chaos/before').string(), '1');
    } finally {
      only.close();
    }
  });
});
