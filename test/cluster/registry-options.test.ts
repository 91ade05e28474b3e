// The registry etcd options of the local cluster: three members with leader helpers,
// client TLS (certificates from pki.ts, including expired and foreign ones).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { Etcd3 } from 'etcd3';
import { envFileText, startCluster, type Cluster } from './cluster.ts';
import { issueClientCert, makeCa } from './pki.ts';

const run = promisify(execFile);

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

describe('registry etcd with TLS (three members)', () => {
  let cluster: Cluster;
  let certs: string;

  before(async () => {
    cluster = await startCluster({ registryMembers: 3, registryTls: true, nodes: 1 });
    certs = join(cluster.dir, 'test-certs');
    await mkdir(certs);
  });

  after(async () => {
    await cluster?.stop();
  });

  /** A client of all members with the given TLS material; calls fail within 3 s. */
  function clientWith(credentials: { ca: string; cert?: string; key?: string } | undefined): Etcd3 {
    return new Etcd3({
      // Without credentials: plain-text gRPC to the TLS ports.
      hosts: cluster.registryEndpoints.map((e) => (credentials === undefined ? e.replace('https:', 'http:') : e)),
      ...(credentials === undefined
        ? {}
        : {
            credentials: {
              rootCertificate: readFileSync(credentials.ca),
              ...(credentials.cert === undefined ? {} : { certChain: readFileSync(credentials.cert) }),
              ...(credentials.key === undefined ? {} : { privateKey: readFileSync(credentials.key) }),
            },
          }),
      defaultCallOptions: () => ({ deadline: Date.now() + 3_000 }),
    });
  }

  async function refused(
    credentials: { ca: string; cert?: string; key?: string } | undefined,
    reason: RegExp,
  ): Promise<void> {
    const client = clientWith(credentials);
    try {
      await assert.rejects(client.put('/tls/refused').value('x').exec(), (err: Error) => {
        assert.match(err.message, reason);
        return true;
      });
    } finally {
      client.close();
    }
  }

  it('serves https only, with plain-http health probes on the metrics listener', async () => {
    for (const member of cluster.registryMembers) {
      assert.match(member.endpoints[0] ?? '', /^https:\/\/127\.0\.0\.1:\d+$/);
      assert.match(member.metricsUrl, /^http:\/\/127\.0\.0\.1:\d+$/);
      assert.notEqual(new URL(member.metricsUrl).port, new URL(member.endpoints[0] ?? '').port);
      assert.deepEqual(await (await fetch(`${member.metricsUrl}/health`)).json(), { health: 'true', reason: '' });
    }
    const files = cluster.registryTlsFiles;
    assert.ok(files !== undefined);
    assert.deepEqual(files, {
      caFile: join(cluster.dir, 'registry', 'ca.crt'),
      certFile: join(cluster.dir, 'registry', 'client.crt'),
      keyFile: join(cluster.dir, 'registry', 'client.key'),
    });
  });

  it('accepts a client with the CA and the client certificate', async () => {
    const files = cluster.registryTlsFiles;
    assert.ok(files !== undefined);
    const client = clientWith({ ca: files.caFile, cert: files.certFile, key: files.keyFile });
    try {
      await client.put('/tls/ok').value('yes');
      assert.equal(await client.get('/tls/ok').string(), 'yes');
    } finally {
      client.close();
    }
    assert.equal(await cluster.registryAdmin().get('/tls/ok').string(), 'yes');
  });

  it('refuses clients without a certificate, with an expired one, or one from another CA', async () => {
    const pki = cluster.registryPki;
    assert.ok(pki !== undefined);
    const expired = await issueClientCert(certs, 'expired', pki.ca, { commonName: 'etcd-registrar', expired: true });
    const otherCa = await makeCa(certs, 'other-ca', 'not-the-registry-ca');
    const foreign = await issueClientCert(certs, 'foreign', otherCa, { commonName: 'etcd-registrar' });
    const fresh = await issueClientCert(certs, 'fresh', pki.ca, { commonName: 'etcd-registrar' });
    // The same CA's fresh certificate works: the refusals below are about the certificate.
    const ok = clientWith({ ca: pki.ca.cert, cert: fresh.cert, key: fresh.key });
    try {
      await ok.put('/tls/fresh').value('1');
    } finally {
      ok.close();
    }
    // etcd's TLS alerts, as the client's handshake reports them.
    await refused({ ca: pki.ca.cert }, /certificate required/);
    await refused({ ca: pki.ca.cert, cert: expired.cert, key: expired.key }, /certificate expired/);
    await refused({ ca: pki.ca.cert, cert: foreign.cert, key: foreign.key }, /unknown ca/);
    await refused(undefined, /UNAVAILABLE/);
    assert.equal(await cluster.registryAdmin().get('/tls/refused').string(), null);
  });

  it('finds and moves the leader over TLS', async () => {
    const leader = await cluster.registryLeader();
    const moved = await cluster.moveRegistryLeader();
    assert.notEqual(moved, leader);
    assert.equal(await cluster.registryLeader(), moved);
  });

  it('writes the TLS files to DIR/env for etcd-registrar and etcdctl', async () => {
    const files = cluster.registryTlsFiles;
    assert.ok(files !== undefined);
    const text = envFileText(cluster);
    const env = parseEnvText(text);
    for (const [names, value] of [
      [['ETCD_CA_FILE', 'ETCD_REGISTRAR_ETCD_CA_FILE', 'ETCDCTL_CACERT'], files.caFile],
      [['ETCD_CERT_FILE', 'ETCD_REGISTRAR_ETCD_CERT_FILE', 'ETCDCTL_CERT'], files.certFile],
      [['ETCD_KEY_FILE', 'ETCD_REGISTRAR_ETCD_KEY_FILE', 'ETCDCTL_KEY'], files.keyFile],
    ] as const) {
      for (const name of names) assert.equal(env[name], value, name);
    }
    // Sourcing the file is enough for etcdctl to reach every member.
    const envFile = join(certs, 'env');
    await writeFile(envFile, text);
    const { stdout } = await run('/bin/sh', ['-c', `. '${envFile}' && "$ETCDCTL" endpoint health -w json`]);
    const health = JSON.parse(stdout) as { endpoint: string; health: boolean }[];
    assert.deepEqual(health.map((h) => [h.endpoint, h.health]).sort(), cluster.registryEndpoints.map((e) => [e, true]).sort());
  });
});
