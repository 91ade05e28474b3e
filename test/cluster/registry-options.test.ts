// The registry etcd options of the local cluster: three members with leader helpers,
// client TLS (certificates from pki.ts, including expired and foreign ones) and etcd auth.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Etcd3 } from 'etcd3';
import { envFileText, startCluster, type Cluster, type RegistryAuth, type RegistryTlsFiles } from './cluster.ts';
import { issueClientCert, makeCa } from './pki.ts';

const run = promisify(execFile);
// etcd-registrar as built by `npm run build` (npm test builds first).
const REGISTRAR_BIN = fileURLToPath(new URL('../../bin/etcd-registrar.js', import.meta.url));

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
    // Plain registry: no credentials anywhere.
    assert.deepEqual(Object.keys(env).filter((k) => /FILE$|USER|PASSWORD|CACERT|CERT$|KEY$/.test(k) && k !== 'KUBE_CA_FILE'), []);
    assert.deepEqual(cluster.registryControllerArgs(), []);
    assert.equal(cluster.registryPki, undefined);
    assert.equal(cluster.registryAuth, undefined);
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

  it('finds the leader while a follower is frozen (SIGSTOP)', async () => {
    const leader = await cluster.registryLeader();
    const follower = cluster.registryMembers.find((m) => m !== leader);
    assert.ok(follower !== undefined);
    await follower.kill('SIGSTOP');
    try {
      assert.equal(await cluster.registryLeader(), leader);
    } finally {
      await follower.kill('SIGCONT');
    }
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

describe('registry etcd with TLS and auth (three members)', () => {
  let cluster: Cluster;
  let certs: string;
  let tls: RegistryTlsFiles;
  let auth: RegistryAuth;

  before(async () => {
    cluster = await startCluster({ registryMembers: 3, registryTls: true, registryAuth: true, registryKeyRoot: '/services/', nodes: 1 });
    certs = join(cluster.dir, 'test-certs');
    await mkdir(certs);
    assert.ok(cluster.registryTlsFiles !== undefined && cluster.registryAuth !== undefined);
    tls = cluster.registryTlsFiles;
    auth = cluster.registryAuth;
  });

  after(async () => {
    await cluster?.stop();
  });

  interface ClientOptions {
    ca?: string;
    cert?: string;
    key?: string;
    user?: { username: string; password: string };
  }

  /** A client of all members; calls fail within 3 s. No `ca`: plain-text gRPC to the TLS ports. */
  function clientWith(opts: ClientOptions): Etcd3 {
    return new Etcd3({
      hosts: cluster.registryEndpoints.map((e) => (opts.ca === undefined ? e.replace('https:', 'http:') : e)),
      ...(opts.ca === undefined
        ? {}
        : {
            credentials: {
              rootCertificate: readFileSync(opts.ca),
              ...(opts.cert === undefined ? {} : { certChain: readFileSync(opts.cert) }),
              ...(opts.key === undefined ? {} : { privateKey: readFileSync(opts.key) }),
            },
          }),
      ...(opts.user === undefined ? {} : { auth: opts.user }),
      defaultCallOptions: () => ({ deadline: Date.now() + 3_000 }),
    });
  }

  /** The controller's view: its client certificate and the etcd-registrar user. */
  function registrarClient(): Etcd3 {
    return clientWith({
      ca: tls.caFile,
      cert: tls.certFile,
      key: tls.keyFile,
      user: { username: auth.username, password: readFileSync(auth.passwordFile, 'utf8').trim() },
    });
  }

  async function withClient<T>(client: Etcd3, use: (c: Etcd3) => Promise<T>): Promise<T> {
    try {
      return await use(client);
    } finally {
      client.close();
    }
  }

  async function refused(opts: ClientOptions, reason: RegExp): Promise<void> {
    await withClient(clientWith(opts), (client) =>
      assert.rejects(client.put('/services/refused').value('x').exec(), (err: Error) => {
        assert.match(err.message, reason);
        return true;
      }),
    );
  }

  it('serves https only, with plain-http health probes on the metrics listener', async () => {
    for (const member of cluster.registryMembers) {
      assert.match(member.endpoints[0] ?? '', /^https:\/\/127\.0\.0\.1:\d+$/);
      assert.match(member.metricsUrl, /^http:\/\/127\.0\.0\.1:\d+$/);
      assert.notEqual(new URL(member.metricsUrl).port, new URL(member.endpoints[0] ?? '').port);
      assert.deepEqual(await (await fetch(`${member.metricsUrl}/health`)).json(), { health: 'true', reason: '' });
    }
    const dir = join(cluster.dir, 'registry');
    assert.deepEqual(tls, { caFile: join(dir, 'ca.crt'), certFile: join(dir, 'client.crt'), keyFile: join(dir, 'client.key') });
  });

  it('accepts the client certificate with the password; the admin client reads it back', async () => {
    await withClient(registrarClient(), async (client) => {
      await client.put('/services/tls-ok').value('yes');
      assert.equal(await client.get('/services/tls-ok').string(), 'yes');
    });
    assert.equal(await cluster.registryAdmin().get('/services/tls-ok').string(), 'yes');
  });

  it('refuses clients without a certificate, with an expired one, or one from another CA', async () => {
    const pki = cluster.registryPki;
    assert.ok(pki !== undefined);
    const user = { username: auth.username, password: auth.password };
    const expired = await issueClientCert(certs, 'expired', pki.ca, { commonName: 'etcd-registrar', expired: true });
    const otherCa = await makeCa(certs, 'other-ca', 'not-the-registry-ca');
    const foreign = await issueClientCert(certs, 'foreign', otherCa, { commonName: 'etcd-registrar' });
    const fresh = await issueClientCert(certs, 'fresh', pki.ca, { commonName: 'etcd-registrar' });
    // A fresh certificate of the same CA works: the refusals below are about the certificate.
    await withClient(clientWith({ ca: pki.ca.cert, cert: fresh.cert, key: fresh.key, user }), (c) =>
      c.put('/services/fresh').value('1').exec(),
    );
    // etcd's TLS alerts, as the client's handshake reports them (no password given: the
    // connection fails before any authentication, and a failed Authenticate call would
    // hide the handshake error).
    await refused({ ca: pki.ca.cert }, /certificate required/);
    await refused({ ca: pki.ca.cert, cert: expired.cert, key: expired.key }, /certificate expired/);
    await refused({ ca: pki.ca.cert, cert: foreign.cert, key: foreign.key }, /unknown ca/);
    await refused({}, /UNAVAILABLE/);
    assert.equal(await cluster.registryAdmin().get('/services/refused').string(), null);
  });

  it('limits etcd-registrar to the key root, the owner records and the election prefix', async () => {
    assert.deepEqual(auth.prefixes, ['/services/', '/etcd-registrar/owners/', 'election/etcd-registrar/']);
    await withClient(registrarClient(), async (client) => {
      // What the controller does: keys on a lease, owner record, campaign.
      const lease = client.lease(10, { autoKeepAlive: false });
      await lease.put('/services/search_PRE/10.0.0.1-86').value('10.0.0.1:86');
      await client.put('/etcd-registrar/owners/test').value(await lease.grant());
      const campaign = client.election('etcd-registrar/test', 5).campaign('replica-1');
      await campaign.wait();
      assert.equal(await client.election('etcd-registrar/test').leader(), 'replica-1');
      await campaign.resign();
      assert.deepEqual(Object.keys(await client.getAll().prefix('/services/search_PRE/').strings()), ['/services/search_PRE/10.0.0.1-86']);
      await lease.revoke();

      const denied = /permission denied/;
      await assert.rejects(client.put('/other/x').value('1').exec(), denied);
      await assert.rejects(client.put('/services').value('1').exec(), denied);
      await assert.rejects(client.put('election/other/x').value('1').exec(), denied);
      await assert.rejects(client.put('/etcd-registrar/other').value('1').exec(), denied);
      await assert.rejects(client.getAll().prefix('/').keys(), denied);
      await assert.rejects(client.user('root').roles(), denied);
      await assert.rejects(client.auth.authDisable(), denied);
    });
    const admin = cluster.registryAdmin();
    assert.equal(await admin.get('/other/x').string(), null);
    assert.equal(await admin.get('/services/search_PRE/10.0.0.1-86').string(), null, 'revoked with its lease');
    assert.equal(await admin.get('/etcd-registrar/owners/test').string() !== null, true);
  });

  it('grants rights for the password only: the certificate alone and a wrong password are refused', async () => {
    // The client certificate's CN is no etcd user, so without a token nothing is allowed.
    await refused({ ca: tls.caFile, cert: tls.certFile, key: tls.keyFile }, /user name is empty|permission denied/);
    await refused({ ca: tls.caFile, cert: tls.certFile, key: tls.keyFile, user: { username: auth.username, password: 'wrong' } }, /authentication failed/);
    const mode = (path: string): number => statSync(path).mode & 0o777;
    assert.equal(mode(auth.passwordFile), 0o600);
    assert.equal(mode(auth.rootPasswordFile), 0o600);
    assert.equal(readFileSync(auth.passwordFile, 'utf8'), `${auth.password}\n`);
    assert.notEqual(auth.password, auth.rootPassword);
  });

  it('finds and moves the leader, and survives a killed member, over TLS with auth', async () => {
    const leader = await cluster.registryLeader();
    const moved = await cluster.moveRegistryLeader();
    assert.notEqual(moved, leader);
    assert.equal(await cluster.registryLeader(), moved);
    await moved.kill('SIGKILL');
    try {
      assert.notEqual(await cluster.registryLeader(), moved);
      await withClient(registrarClient(), (c) => c.put('/services/during-outage').value('1').exec());
    } finally {
      await moved.start();
    }
  });

  it('writes TLS files and credentials to DIR/env for etcd-registrar and etcdctl', async () => {
    const text = envFileText(cluster);
    const env = parseEnvText(text);
    const expected: Record<string, string> = {
      ETCD_ENDPOINTS: cluster.registryEndpoints.join(','),
      ETCD_CA_FILE: tls.caFile,
      ETCD_CERT_FILE: tls.certFile,
      ETCD_KEY_FILE: tls.keyFile,
      ETCD_USERNAME: 'etcd-registrar',
      ETCD_PASSWORD_FILE: auth.passwordFile,
      ETCD_REGISTRAR_ETCD_ENDPOINTS: cluster.registryEndpoints.join(','),
      ETCD_REGISTRAR_ETCD_CA_FILE: tls.caFile,
      ETCD_REGISTRAR_ETCD_CERT_FILE: tls.certFile,
      ETCD_REGISTRAR_ETCD_KEY_FILE: tls.keyFile,
      ETCD_REGISTRAR_ETCD_USERNAME: 'etcd-registrar',
      ETCD_REGISTRAR_ETCD_PASSWORD_FILE: auth.passwordFile,
      ETCDCTL_CACERT: tls.caFile,
      ETCDCTL_CERT: tls.certFile,
      ETCDCTL_KEY: tls.keyFile,
      ETCDCTL_USER: 'root',
      ETCDCTL_PASSWORD: auth.rootPassword,
    };
    for (const [name, value] of Object.entries(expected)) assert.equal(env[name], value, name);
    assert.deepEqual(cluster.registryControllerArgs(), [
      '--etcd-ca-file', tls.caFile, '--etcd-cert-file', tls.certFile, '--etcd-key-file', tls.keyFile,
      '--etcd-username', 'etcd-registrar', '--etcd-password-file', auth.passwordFile,
    ]);
    // Sourcing the file is enough for etcdctl (as root) to reach every member and read anything.
    const envFile = join(certs, 'env');
    await writeFile(envFile, text);
    await cluster.registryAdmin().put('/outside/root-only').value('visible');
    const sh = async (command: string): Promise<string> =>
      (await run('/bin/sh', ['-c', `. '${envFile}' && ${command}`])).stdout;
    const health = JSON.parse(await sh('"$ETCDCTL" endpoint health -w json')) as { endpoint: string; health: boolean }[];
    assert.deepEqual(health.map((h) => [h.endpoint, h.health]).sort(), cluster.registryEndpoints.map((e) => [e, true]).sort());
    assert.equal(await sh('"$ETCDCTL" get /outside/root-only --print-value-only'), 'visible\n');
  });

  it('is enough for etcd-registrar: reconcile --once with only DIR/env sourced reaches the registry', async () => {
    const envFile = join(certs, 'controller.env');
    await writeFile(envFile, envFileText(cluster));
    const flags = `--kubeconfig "$KUBECONFIG" --owner-id envtest --environment PRE --key-root /services/ --key-template '/services/{service}_{environment}/{ip}-{port}' --output json`;
    const reconcile = (extra = ''): Promise<{ stdout: string }> =>
      run('/bin/sh', ['-c', `. '${envFile}' && ${extra} '${process.execPath}' '${REGISTRAR_BIN}' reconcile --once ${flags}`]);
    const { stdout } = await reconcile();
    assert.equal((JSON.parse(stdout) as { outcome: string }).outcome, 'ok');
    // The password really comes from the env file: a wrong one makes the same command fail.
    const wrong = join(certs, 'wrong-password');
    await writeFile(wrong, 'not-the-password\n', { mode: 0o600 });
    await assert.rejects(reconcile(`ETCD_REGISTRAR_ETCD_PASSWORD_FILE='${wrong}'`), /authentication failed/);
  });
});
