// The controller against a registry etcd that serves mutual TLS and has etcd auth on, with
// a role limited to the key root: it registers pods; wrong CA, expired certificate and wrong
// password give a clear error and readiness false without a crash, and it recovers by
// itself when the right files appear; no secret ever reaches its logs or metrics.
import assert from 'node:assert/strict';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startCluster, type Cluster } from '../cluster/cluster.ts';
import { REGISTRY_CLIENT_CN, issueClientCert, makeCa } from '../cluster/pki.ts';
import { eventually, startController, waitPodReadyIp, type ControllerProcess } from './support.ts';

const NS = 'secure';
const PREFIX = '/search_PRE/';

let cluster: Cluster;
let work: string;
const controllers: ControllerProcess[] = [];

/** The controller's credential files, copied so that each test can break and repair them. */
interface Files {
  ca: string;
  cert: string;
  key: string;
  password: string;
}

async function freshFiles(name: string): Promise<Files> {
  const tls = cluster.registryTlsFiles;
  const auth = cluster.registryAuth;
  assert.ok(tls !== undefined && auth !== undefined);
  const files = { ca: join(work, `${name}-ca.crt`), cert: join(work, `${name}-tls.crt`), key: join(work, `${name}-tls.key`), password: join(work, `${name}-password`) };
  await copyFile(tls.caFile, files.ca);
  await copyFile(tls.certFile, files.cert);
  await copyFile(tls.keyFile, files.key);
  await copyFile(auth.passwordFile, files.password);
  return files;
}

async function runController(name: string, files: Files): Promise<ControllerProcess> {
  const auth = cluster.registryAuth;
  assert.ok(auth !== undefined);
  const controller = await startController({
    name,
    dir: work,
    kubeconfig: cluster.kubeconfigPath,
    etcdEndpoints: cluster.registryEndpoints,
    extraArgs: [
      '--environment', 'PRE', '--owner-id', name, '--lease-ttl', '10s', '--namespaces', NS, '--leader-election', 'false',
      '--etcd-ca-file', files.ca, '--etcd-cert-file', files.cert, '--etcd-key-file', files.key,
      '--etcd-username', auth.username, '--etcd-password-file', files.password,
      '--etcd-credential-refresh-interval', '200ms', '--etcd-call-timeout', '2s', '--log-level', 'debug',
    ],
  });
  controllers.push(controller);
  return controller;
}

async function ready(controller: ControllerProcess): Promise<boolean> {
  return (await fetch(`${controller.metricsUrl}/readyz`)).ok;
}

/** Error lines the controller logged, message and error text joined. */
function errorText(controller: ControllerProcess): string {
  return controller
    .lines()
    .filter((line) => line['level'] === 'error' || line['level'] === 50)
    .map((line) => `${String(line['msg'])} ${JSON.stringify(line['err'] ?? '')}`)
    .join('\n');
}

async function expectRefusedThenRecovered(controller: ControllerProcess, message: RegExp, repair: () => Promise<void>): Promise<void> {
  await eventually(`an error matching ${message}`, () => message.test(errorText(controller)), 30_000);
  assert.equal(await ready(controller), false, 'not ready while etcd refuses it');
  assert.ok(controller.proc.isRunning(), 'still running');
  await repair();
  await eventually('ready once the right files are in place', () => ready(controller), 60_000);
}

async function podKey(name: string): Promise<string> {
  await cluster.kubectl(['apply', '-f', '-'], {
    input: JSON.stringify({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace: NS, annotations: { 'etcd-registrar.io/register': 'true', 'etcd-registrar.io/service': 'search', 'etcd-registrar.io/port': '86' } },
      spec: { nodeName: cluster.nodeNames[0], containers: [{ name: 'app', image: 'x:1' }] },
    }),
  });
  return `${PREFIX}${await waitPodReadyIp(cluster, NS, name, 60_000)}-86`;
}

async function registered(key: string): Promise<string | null> {
  return cluster.registryAdmin().get(key).string();
}

before(async () => {
  cluster = await startCluster({ nodes: 1, registryTls: true, registryAuth: true });
  await cluster.createNamespace(NS);
  work = await mkdtemp(join(tmpdir(), 'registrar-security-'));
});

after(async () => {
  for (const controller of controllers) if (controller.proc.isRunning()) await controller.stop();
  await cluster?.stop();
  if (work !== undefined) await rm(work, { recursive: true, force: true });
});

describe('etcd mTLS and authentication', () => {
  it('registers pods with the limited etcd user over mutual TLS', async () => {
    const controller = await runController('secure-ok', await freshFiles('ok'));
    await controller.waitReady();
    const key = await podKey('app-1');
    await eventually('app-1 registered', async () => (await registered(key)) !== null, 30_000);
    assert.equal(await registered(key), key.slice(PREFIX.length).replace(/-86$/, ':86'));
    assert.equal(await controller.stop(), 0);
  });

  it('a CA that does not verify the server: clear error, not ready, recovers when the right CA appears', async () => {
    const files = await freshFiles('wrong-ca');
    const other = await makeCa(work, 'other-ca', 'another-ca');
    await copyFile(other.cert, files.ca);
    const controller = await runController('secure-ca', files);
    await expectRefusedThenRecovered(controller, /server certificate is not signed by the CA in --etcd-ca-file/, async () => {
      await copyFile(cluster.registryTlsFiles?.caFile ?? '', files.ca);
    });
    assert.equal(await controller.stop(), 0);
  });

  it('an expired client certificate: the error names its expiry, not ready, recovers when renewed', async () => {
    const files = await freshFiles('expired');
    const pki = cluster.registryPki;
    assert.ok(pki !== undefined);
    const expired = await issueClientCert(work, 'expired-client', pki.ca, { commonName: REGISTRY_CLIENT_CN, expired: true });
    await copyFile(expired.cert, files.cert);
    await copyFile(expired.key, files.key);
    const controller = await runController('secure-expired', files);
    await expectRefusedThenRecovered(controller, /client certificate in .* expired at \d{4}-/, async () => {
      const renewed = await issueClientCert(work, 'renewed-client', pki.ca, { commonName: REGISTRY_CLIENT_CN });
      // The key first, then the certificate: the half-way state is refused and not used.
      await copyFile(renewed.key, files.key);
      await copyFile(renewed.cert, files.cert);
    });
    assert.equal(await controller.stop(), 0);
  });

  it('a wrong password: clear error, not ready, recovers when the password file is corrected', async () => {
    const files = await freshFiles('password');
    await writeFile(files.password, 'not-the-password\n');
    const controller = await runController('secure-password', files);
    await expectRefusedThenRecovered(controller, /authentication failed/, async () => {
      await copyFile(cluster.registryAuth?.passwordFile ?? '', files.password);
    });
    const key = await podKey('app-2');
    await eventually('app-2 registered by the recovered controller', async () => (await registered(key)) !== null, 30_000);
    assert.equal(await controller.stop(), 0);
  });

  it('no password or private key ever appears in a log line or in the metrics', async () => {
    const auth = cluster.registryAuth;
    const pki = cluster.registryPki;
    assert.ok(auth !== undefined && pki !== undefined && controllers.length >= 4);
    const secrets = [auth.password, auth.rootPassword, 'not-the-password'];
    // Every base64 line of every private key the controllers were given.
    const keyFiles = [pki.client.key, join(work, 'expired-client.key'), join(work, 'renewed-client.key')];
    for (const file of keyFiles) {
      const pem = await readFile(file, 'utf8');
      secrets.push(...pem.split('\n').filter((line) => line.length >= 16 && !line.startsWith('-----')));
    }
    const running = await runController('secure-metrics', await freshFiles('metrics'));
    await running.waitReady();
    const metrics = await (await fetch(`${running.metricsUrl}/metrics`)).text();
    await running.stop();
    for (const controller of controllers) {
      const log = await readFile(controller.logPath, 'utf8');
      assert.ok(log.length > 0);
      assert.ok(!log.includes('PRIVATE KEY'), `${controller.logPath} mentions a private key`);
      for (const secret of secrets) assert.ok(!log.includes(secret), `${controller.logPath} contains a secret`);
    }
    for (const secret of secrets) assert.ok(!metrics.includes(secret), 'metrics contain a secret');
  });
});
