// The registry against an etcd with authentication enabled, and over mutual TLS.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Etcd3 } from 'etcd3';
import { freePort } from '../../test/cluster/process.ts';
import { createClient } from './client.ts';
import type { TxnRequest } from './txn-wire.ts';
import { dump, enableAuth, makeRegistry, register, startEtcd, waitUntil, type EtcdServer } from './fixture.test.ts';

describe('etcd authentication', () => {
  let etcd: EtcdServer;
  let dir: string;
  let root: Etcd3;
  let passwordFile: string;

  before(async () => {
    // Short-lived simple tokens, so the test also covers token renewal.
    etcd = await startEtcd({ extraArgs: ['--auth-token=simple', '--auth-token-ttl=2'] });
    dir = await mkdtemp(join(tmpdir(), 'registry-auth-'));
    passwordFile = join(dir, 'password');
    await writeFile(passwordFile, 's3cret-registrar\n', { mode: 0o600 });
    root = await enableAuth(etcd.endpoints, 's3cret-registrar');
  });

  after(async () => {
    root?.close();
    await etcd?.destroy();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  test('registers with a password file, survives token expiry and an etcd restart', async () => {
    const reg = makeRegistry(etcd.endpoints, { auth: { username: 'registrar', passwordFile }, leaseTtlSeconds: 3 });
    await reg.start();
    try {
      const lease = reg.leaseId();
      assert.equal((await reg.apply([register('/auth_PRE/a', 'A')]))[0]!.outcome, 'ok');
      // Tokens live 2 s: wait them out, then write again.
      const t0 = Date.now();
      await waitUntil('token expiry', () => Date.now() - t0 > 3_000, 5_000);
      assert.equal((await reg.apply([register('/auth_PRE/b', 'B')]))[0]!.outcome, 'ok');
      // A restart forgets every simple token: keepalives must resume anyway.
      await etcd.kill('SIGKILL');
      await etcd.start();
      const up = Date.now();
      await waitUntil('keepalive after restart', () => (reg.lastKeepaliveAt() ?? 0) > up, 10_000);
      assert.equal(reg.leaseId(), lease);
      assert.equal((await reg.apply([register('/auth_PRE/c', 'C')]))[0]!.outcome, 'ok');
      const seen = await dump(root, '/auth_PRE/');
      assert.deepEqual([...seen.values()].map((e) => e.lease), [lease, lease, lease]);
    } finally {
      await reg.close();
    }
  });

  test("a transaction after its auth token expired logs in again through etcd3's path", async () => {
    const credentials = { endpoints: etcd.endpoints, callTimeoutMs: 5_000, auth: { username: 'registrar', passwordFile } };
    const client = await createClient(credentials);
    try {
      const put = (k: string): TxnRequest => ({ compare: [], success: [{ request_put: { key: Buffer.from(k), value: Buffer.from('v') } }], failure: [] });
      assert.equal((await client.etcd.sendTxn(put('/auth_PRE/t1'))).succeeded, true);
      assert.equal(client.etcd.reauthenticatedTxns, 0);
      // Nothing else uses this client's token (no lease, no watch): after 2 s etcd has forgotten it.
      const t0 = Date.now();
      await waitUntil('token expiry', () => Date.now() - t0 > 3_000, 5_000);
      const answer = await client.etcd.sendTxn(put('/auth_PRE/t2'));
      assert.equal(answer.succeeded, true);
      assert.equal(client.etcd.reauthenticatedTxns, 1);
      assert.equal((await dump(root, '/auth_PRE/t')).size, 2);
      // The fresh token serves the next transaction on the fast path again.
      assert.equal((await client.etcd.sendTxn(put('/auth_PRE/t3'))).succeeded, true);
      assert.equal(client.etcd.reauthenticatedTxns, 1);
    } finally {
      client.close();
    }
  });

  test('a wrong password fails start() without retrying forever', async () => {
    const bad = join(dir, 'bad');
    await writeFile(bad, 'nope');
    const reg = makeRegistry(etcd.endpoints, { auth: { username: 'registrar', passwordFile: bad } });
    await assert.rejects(reg.start(), /authentication failed/);
    await reg.close();
  });
});

describe('etcd over mutual TLS', () => {
  let etcd: EtcdServer;
  let dir: string;
  let httpsEndpoint: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'registry-tls-'));
    const ssl = (...args: string[]): void => {
      execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
    };
    ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=test-ca');
    await writeFile(join(dir, 'server.ext'), 'subjectAltName=DNS:etcd.registry.test\nextendedKeyUsage=serverAuth\n');
    await writeFile(join(dir, 'client.ext'), 'extendedKeyUsage=clientAuth\n');
    for (const [name, cn, ext] of [['server', 'etcd.registry.test', 'server.ext'], ['client', 'registrar', 'client.ext']] as const) {
      ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`);
      ssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '1', '-extfile', ext);
    }
    const clientPort = await freePort();
    const tlsPort = await freePort();
    httpsEndpoint = `https://127.0.0.1:${tlsPort}`;
    // Plain http stays on the harness' port for its health check; clients use https.
    etcd = await startEtcd({
      clientPort,
      extraArgs: [
        `--listen-client-urls=http://127.0.0.1:${clientPort},${httpsEndpoint}`,
        `--advertise-client-urls=${httpsEndpoint}`,
        `--cert-file=${join(dir, 'server.crt')}`,
        `--key-file=${join(dir, 'server.key')}`,
        `--trusted-ca-file=${join(dir, 'ca.crt')}`,
        '--client-cert-auth',
      ],
    });
  });

  after(async () => {
    await etcd?.destroy();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  test('connects with CA, client certificate and server name override', async () => {
    const reg = makeRegistry([httpsEndpoint], {
      tls: {
        caFile: join(dir, 'ca.crt'),
        certFile: join(dir, 'client.crt'),
        keyFile: join(dir, 'client.key'),
        serverName: 'etcd.registry.test',
      },
    });
    await reg.start();
    try {
      assert.equal((await reg.apply([register('/tls_PRE/a', 'A')]))[0]!.outcome, 'ok');
      assert.equal((await reg.readAll()).get('/tls_PRE/a')?.lease, reg.leaseId());
      await waitUntil('a keepalive over TLS', () => (reg.lastKeepaliveAt() ?? 0) > Date.now() - 1500, 5_000);
    } finally {
      await reg.close();
    }
  });

  test('without a client certificate the connection is refused', async () => {
    const reg = makeRegistry([httpsEndpoint], {
      callTimeoutMs: 500,
      retry: { attempts: 2, baseDelayMs: 10, maxDelayMs: 20 },
      tls: { caFile: join(dir, 'ca.crt'), serverName: 'etcd.registry.test' },
    });
    await assert.rejects(reg.start(), (err: Error) => {
      assert.match(err.message, /certificate|handshake|UNAVAILABLE|Connection dropped|ECONNRESET|socket/i);
      return true;
    });
    await reg.close();
  });
});
