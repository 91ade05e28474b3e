// Rotated credential files take effect without restarting the registry, and bad files give
// clear errors — against a real etcd serving mutual TLS, and one with password auth.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Etcd3 } from 'etcd3';
import pino from 'pino';
import { freePort } from '../../test/cluster/process.ts';
import { enableAuth, makeRegistry, register, startEtcd, waitUntil, type EtcdServer } from './fixture.test.ts';

/** A throwaway CA that can also sign certificates valid only in the past. */
class TestCa {
  readonly dir: string;
  constructor(dir: string) {
    this.dir = dir;
  }

  static async create(dir: string, name: string): Promise<TestCa> {
    await mkdir(dir, { recursive: true });
    const ca = new TestCa(dir);
    ca.#ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', `/CN=${name}`);
    await writeFile(join(dir, 'ca.cnf'), '[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\nnew_certs_dir=.\nserial=serial\ndefault_md=sha256\npolicy=p\nunique_subject=no\n[p]\ncommonName=supplied\n');
    await writeFile(join(dir, 'index.txt'), '');
    await writeFile(join(dir, 'serial'), '01\n');
    await writeFile(join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
    await writeFile(join(dir, 'client.ext'), 'extendedKeyUsage=clientAuth\n');
    return ca;
  }

  /** Issues NAME.crt/NAME.key; `expired` makes one that ran out in 2020. */
  issue(name: string, kind: 'server' | 'client', expired = false): { cert: string; key: string } {
    this.#ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
    const dates = expired ? ['-startdate', '20200101000000Z', '-enddate', '20200102000000Z'] : ['-days', '2'];
    this.#ssl('ca', '-batch', '-notext', '-config', 'ca.cnf', '-cert', 'ca.crt', '-keyfile', 'ca.key', '-in', `${name}.csr`, '-out', `${name}.crt`, '-extfile', `${kind}.ext`, ...dates);
    return { cert: join(this.dir, `${name}.crt`), key: join(this.dir, `${name}.key`) };
  }

  get caFile(): string {
    return join(this.dir, 'ca.crt');
  }

  #ssl(...args: string[]): void {
    execFileSync('openssl', args, { cwd: this.dir, stdio: 'ignore' });
  }
}

/** Log lines the registry wrote, to assert on messages (and on what they must not contain). */
function capturingLogger(): { logger: pino.Logger; lines: string[] } {
  const lines: string[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
  return { logger, lines };
}

describe('rotating TLS credentials', () => {
  let dir: string;
  let ca1: TestCa;
  let ca2: TestCa;
  let etcd: EtcdServer;
  let endpoint: string;
  /** Files etcd serves with; overwritten to rotate the server side. */
  let serverFiles: { ca: string; cert: string; key: string };
  /** Files the registry reads; overwritten to rotate the client side. */
  let clientFiles: { ca: string; cert: string; key: string };

  const useServer = async (ca: TestCa, name: string): Promise<void> => {
    const issued = ca.issue(name, 'server');
    await copyFile(ca.caFile, serverFiles.ca);
    await copyFile(issued.cert, serverFiles.cert);
    await copyFile(issued.key, serverFiles.key);
  };
  const useClient = async (ca: TestCa, issued: { cert: string; key: string }): Promise<void> => {
    await copyFile(ca.caFile, clientFiles.ca);
    await copyFile(issued.cert, clientFiles.cert);
    await copyFile(issued.key, clientFiles.key);
  };
  const plainClient = (): Etcd3 => new Etcd3({ hosts: etcd.endpoints });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'registry-rotation-'));
    ca1 = await TestCa.create(join(dir, 'ca1'), 'ca-one');
    ca2 = await TestCa.create(join(dir, 'ca2'), 'ca-two');
    await mkdir(join(dir, 'server'));
    await mkdir(join(dir, 'client'));
    serverFiles = { ca: join(dir, 'server/ca.crt'), cert: join(dir, 'server/tls.crt'), key: join(dir, 'server/tls.key') };
    clientFiles = { ca: join(dir, 'client/ca.crt'), cert: join(dir, 'client/tls.crt'), key: join(dir, 'client/tls.key') };
    await useServer(ca1, 'server-one');
    const clientPort = await freePort();
    const tlsPort = await freePort();
    endpoint = `https://127.0.0.1:${tlsPort}`;
    // Plain http stays on the harness' port for its health check and the test's own reads.
    etcd = await startEtcd({
      clientPort,
      extraArgs: [
        `--listen-client-urls=http://127.0.0.1:${clientPort},${endpoint}`,
        `--advertise-client-urls=${endpoint}`,
        `--cert-file=${serverFiles.cert}`,
        `--key-file=${serverFiles.key}`,
        `--trusted-ca-file=${serverFiles.ca}`,
        '--client-cert-auth',
      ],
    });
  });

  after(async () => {
    await etcd?.destroy();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  test('a wrong CA fails with a clear error; the right CA file is picked up by the next start', async () => {
    await useClient(ca2, ca2.issue('client-wrong-ca', 'client'));
    const { logger } = capturingLogger();
    const reg = makeRegistry([endpoint], {
      logger,
      callTimeoutMs: 1_000,
      retry: { attempts: 2, baseDelayMs: 10, maxDelayMs: 20 },
      tls: { caFile: clientFiles.ca, certFile: clientFiles.cert, keyFile: clientFiles.key },
    });
    try {
      await assert.rejects(reg.start(), /cannot connect to etcd at 127.0.0.1:\d+ over TLS: the etcd server certificate is not signed by the CA in --etcd-ca-file/);
      await useClient(ca1, ca1.issue('client-right-ca', 'client'));
      await reg.start();
      assert.equal((await reg.apply([register('/rot_PRE/ca', 'A')]))[0]?.outcome, 'ok');
    } finally {
      await reg.close();
    }
  });

  test('an expired client certificate is refused before dialling, with its expiry date', async () => {
    await useClient(ca1, ca1.issue('client-expired', 'client', true));
    const reg = makeRegistry([endpoint], {
      tls: { caFile: clientFiles.ca, certFile: clientFiles.cert, keyFile: clientFiles.key },
    });
    try {
      await assert.rejects(reg.start(), /client certificate in .*tls\.crt expired at 2020-01-02T00:00:00\.000Z/);
      await useClient(ca1, ca1.issue('client-renewed', 'client'));
      await reg.start();
      assert.equal((await reg.apply([register('/rot_PRE/expired', 'B')]))[0]?.outcome, 'ok');
    } finally {
      await reg.close();
    }
  });

  test('rotating to a new CA while running: same lease, no restart of the registry', async () => {
    await useServer(ca1, 'server-one-again');
    await etcd.kill('SIGKILL');
    await etcd.start();
    await useClient(ca1, ca1.issue('client-before', 'client'));
    const { logger, lines } = capturingLogger();
    const reg = makeRegistry([endpoint], {
      logger,
      leaseTtlSeconds: 10,
      credentialRefreshMs: 100,
      tls: { caFile: clientFiles.ca, certFile: clientFiles.cert, keyFile: clientFiles.key },
    });
    await reg.start();
    const reader = plainClient();
    try {
      const lease = reg.leaseId();
      assert.equal((await reg.apply([register('/rot_PRE/before', 'A')]))[0]?.outcome, 'ok');

      // A broken rotation (key of another certificate) is reported and not used.
      const stray = ca2.issue('client-stray', 'client');
      await copyFile(stray.key, clientFiles.key);
      await waitUntil('the mismatch reported', () => lines.some((l) => l.includes('does not match the certificate')), 5_000);
      assert.ok(lines.some((l) => l.includes('keeping the previous credentials')));

      // The real rotation: both sides move to CA two, then etcd drops every connection.
      await useClient(ca2, ca2.issue('client-after', 'client'));
      await useServer(ca2, 'server-two');
      await waitUntil('the rotation noticed', () => lines.some((l) => l.includes('credential files changed')), 5_000);
      await etcd.kill('SIGKILL');
      await etcd.start();
      const restarted = Date.now();
      await waitUntil('a keepalive with the new certificates', () => (reg.lastKeepaliveAt() ?? 0) > restarted, 15_000);
      assert.equal(reg.leaseId(), lease);
      assert.equal((await reg.apply([register('/rot_PRE/after', 'B')]))[0]?.outcome, 'ok');
      const after = await reader.getAll().prefix('/rot_PRE/').strings();
      assert.equal(after['/rot_PRE/before'], 'A');
      assert.equal(after['/rot_PRE/after'], 'B');
      // The old client certificate no longer works against this server, so the writes above
      // prove the new files were used.
      const stale = makeRegistry([endpoint], {
        callTimeoutMs: 1_000,
        retry: { attempts: 1, baseDelayMs: 10, maxDelayMs: 10 },
        tls: { caFile: ca1.caFile, certFile: join(ca1.dir, 'client-before.crt'), keyFile: join(ca1.dir, 'client-before.key') },
      });
      await assert.rejects(stale.start());
      await stale.close();
    } finally {
      reader.close();
      await reg.close();
    }
  });
});

describe('rotating the password file', () => {
  let etcd: EtcdServer;
  let dir: string;
  let admin: Etcd3;

  before(async () => {
    etcd = await startEtcd({ extraArgs: ['--auth-token=simple'] });
    dir = await mkdtemp(join(tmpdir(), 'registry-password-'));
    admin = await enableAuth(etcd.endpoints, 'first-password');
  });

  after(async () => {
    admin?.close();
    await etcd?.destroy();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  test('a wrong password fails start; the corrected file is used by the next start', async () => {
    const file = join(dir, 'wrong');
    await writeFile(file, 'not-the-password\n');
    const reg = makeRegistry(etcd.endpoints, { auth: { username: 'registrar', passwordFile: file } });
    try {
      await assert.rejects(reg.start(), /authentication failed/);
      await writeFile(file, 'first-password\n');
      await reg.start();
      assert.equal((await reg.apply([register('/pw_PRE/a', 'A')]))[0]?.outcome, 'ok');
    } finally {
      await reg.close();
    }
  });

  test('a password changed in etcd and in the file while running: writes continue', async () => {
    const file = join(dir, 'password');
    await writeFile(file, 'first-password\n');
    const { logger, lines } = capturingLogger();
    const reg = makeRegistry(etcd.endpoints, {
      logger,
      auth: { username: 'registrar', passwordFile: file },
      credentialRefreshMs: 100,
      leaseTtlSeconds: 10,
    });
    await reg.start();
    try {
      const lease = reg.leaseId();
      assert.equal((await reg.apply([register('/pw_PRE/before', 'A')]))[0]?.outcome, 'ok');
      // The file changes first (as a Secret update would), then etcd, which revokes tokens.
      await writeFile(file, 'second-password\n');
      await waitUntil('the new password file read', () => lines.some((l) => l.includes('credential files changed')), 5_000);
      await admin.user('registrar').setPassword('second-password');
      await waitUntil('a write after the change', async () => (await reg.apply([register('/pw_PRE/after', 'B')]))[0]?.outcome === 'ok', 10_000);
      assert.equal(reg.leaseId(), lease);
      const all = await admin.getAll().prefix('/pw_PRE/').strings();
      assert.equal(all['/pw_PRE/after'], 'B');
    } finally {
      await reg.close();
    }
  });
});
