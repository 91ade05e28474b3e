// The container image as an operator runs it: built from the Dockerfile (`npm run image`'s
// code, on the cached locally built bases), started with podman against the local cluster
// exactly as the chart's securityContext runs it (read-only root filesystem, uid/gid 65532,
// no capabilities), with the chart's ServiceAccount kubeconfig and the etcd mTLS + password
// files mounted read-only. It registers a pod, answers its probes and /metrics, keeps keys
// and lease on SIGTERM and exits 0, and writes nothing to its filesystem.
// Nothing here is skipped: without podman/buildah/mmdebstrap, root or the kernel features
// they need, `before` fails with one line naming the cause.
import assert from 'node:assert/strict';
import { chmod, chown, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startCluster, type Cluster } from '../cluster/cluster.ts';
import { freePort } from '../cluster/process.ts';
import { SYSTEM_PACKAGES } from '../cluster/system-packages.ts';
import { eventually, keyState, repoRoot, waitPodReadyIp } from '../e2e/support.ts';
import { template } from '../chart/helm.ts';
import { parseLogLinesStrict } from '../../src/observability/testing.ts';
import { buildImage, megabytes, type BuiltImage } from '../../scripts/image.ts';
import { NONROOT_UID } from '../../scripts/image/bases.ts';
import { checkImageToolchain, lastErrorLine, podman, podmanOk, run, type RunResult } from '../../scripts/image/toolchain.ts';

const NS = 'image-demo';
const RELEASE_NS = 'etcd-registrar';
const SA = 'etcd-registrar';
const PREFIX = '/search_PRE/';
const IN_CONTAINER = '/etc/etcd-registrar';
/** The budget for the runtime image, uncompressed. */
const MAX_IMAGE_BYTES = 150e6;

let image: BuiltImage;
let cluster: Cluster;
let work: string;
const container = `etcd-registrar-image-test-${process.pid}`;
let metricsUrl = '';
let startedAt = 0;

/** Reads a file inside the image with the image's own Node (there is no shell or cat). */
async function readInImage(path: string): Promise<RunResult> {
  return podman(['run', '--rm', '--read-only', '--network', 'none', '--entrypoint', '/nodejs/bin/node', image.name, '-e', `process.stdout.write(require('fs').readFileSync(${JSON.stringify(path)}, 'utf8'))`]);
}

/**
 * What the container wrote to its filesystem (`podman diff`), less the mount point podman
 * itself creates for the credentials volume (IN_CONTAINER and its parent directories).
 */
async function containerWrites(): Promise<string[]> {
  const parts = IN_CONTAINER.split('/').filter((p) => p !== '');
  const mountPath = new Set(parts.map((_, i) => `/${parts.slice(0, i + 1).join('/')}`));
  return (await podmanOk(['diff', container]))
    .split('\n')
    .filter((line) => line.trim() !== '')
    .filter((line) => !mountPath.has(line.slice(2).trim()));
}

async function get(path: string): Promise<{ status: number; body: string }> {
  const response = await fetch(`${metricsUrl}${path}`, { signal: AbortSignal.timeout(2000) });
  return { status: response.status, body: await response.text() };
}

/** Copies a file into the mounted credentials directory, readable by uid 65532 only (like a Secret volume with fsGroup). */
async function credential(from: string, name: string): Promise<string> {
  const to = join(work, 'creds', name);
  await copyFile(from, to);
  await chown(to, NONROOT_UID, NONROOT_UID);
  await chmod(to, 0o400);
  return `${IN_CONTAINER}/${name}`;
}

before(async () => {
  await checkImageToolchain();
  const started = Date.now();
  image = await buildImage({ log: (line) => process.stderr.write(`${line}\n`) });
  process.stderr.write(`[image] ${image.name} ${megabytes(image.size)} built in ${Math.round((Date.now() - started) / 1000)}s\n`);
  cluster = await startCluster({ nodes: 1, registryTls: true, registryAuth: true });
  work = await mkdtemp(join(tmpdir(), 'registrar-image-'));
  await mkdir(join(work, 'creds'), { mode: 0o755 });
  await cluster.createNamespace(NS);
  await cluster.createNamespace(RELEASE_NS);
  // The chart's own ServiceAccount and RBAC (the Deployment itself cannot run under KWOK).
  const objects = (await template({ release: 'etcd-registrar', namespace: RELEASE_NS, set: ['fullnameOverride=etcd-registrar'] })).filter((o) =>
    ['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding'].includes(o.kind),
  );
  assert.ok(objects.some((o) => o.kind === 'ServiceAccount' && o.metadata.name === SA), `the chart renders ServiceAccount ${SA}`);
  await cluster.kubectl(['apply', '-f', '-'], { input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }) });
  const saKubeconfig = await cluster.serviceAccountKubeconfig(RELEASE_NS, SA, { path: join(work, 'sa.kubeconfig') });
  const apiCa = await credential(cluster.caPath, 'api-ca.crt');
  const kubeconfig = (await readFile(saKubeconfig, 'utf8')).replace(JSON.stringify(cluster.caPath), JSON.stringify(apiCa));
  await writeFile(join(work, 'kubeconfig.in'), kubeconfig);
  const tls = cluster.registryTlsFiles;
  const auth = cluster.registryAuth;
  assert.ok(tls !== undefined && auth !== undefined);
  const args = [
    '--kubeconfig', await credential(join(work, 'kubeconfig.in'), 'kubeconfig'),
    '--etcd-endpoints', cluster.registryEndpoints.join(','),
    '--etcd-ca-file', await credential(tls.caFile, 'etcd-ca.crt'),
    '--etcd-cert-file', await credential(tls.certFile, 'tls.crt'),
    '--etcd-key-file', await credential(tls.keyFile, 'tls.key'),
    '--etcd-username', auth.username,
    '--etcd-password-file', await credential(auth.passwordFile, 'password'),
  ];
  const port = await freePort();
  metricsUrl = `http://127.0.0.1:${port}`;
  startedAt = Date.now();
  await podmanOk([
    'run', '--detach', '--name', container,
    // As the chart's securityContext: read-only root, non-root ids, no capabilities. No
    // tmpfs either (podman adds /tmp, /run by default with --read-only): nothing writable.
    '--read-only', '--read-only-tmpfs=false', '--user', `${NONROOT_UID}:${NONROOT_UID}`, '--cap-drop=ALL', '--security-opt', 'no-new-privileges',
    '--network', 'host',
    '--volume', `${join(work, 'creds')}:${IN_CONTAINER}:ro`,
    image.name, 'run', ...args,
    '--metrics-address', `127.0.0.1:${port}`,
    '--environment', 'PRE', '--owner-id', 'image-test', '--lease-ttl', '10s', '--namespaces', NS,
  ]);
});

after(async () => {
  const logs = await podman(['logs', container]).catch(() => undefined);
  if (logs !== undefined && process.env['IMAGE_TEST_LOGS'] === '1') process.stderr.write(logs.stdout + logs.stderr);
  await podman(['rm', '--force', '--time', '1', container]).catch(() => undefined);
  await cluster?.stop();
  if (work !== undefined) await rm(work, { recursive: true, force: true });
});

describe('the container image', () => {
  it('is small: runtime image within 150 MB uncompressed, no shell, nonroot, the SBOM inside', async () => {
    assert.ok(image.size <= MAX_IMAGE_BYTES, `${image.name} is ${megabytes(image.size)}, over ${megabytes(MAX_IMAGE_BYTES)}`);
    const user = (await podmanOk(['image', 'inspect', '--format', '{{.Config.User}}', image.name])).trim();
    assert.equal(user, `${NONROOT_UID}:${NONROOT_UID}`);
    const shell = await podman(['run', '--rm', '--network', 'none', '--entrypoint', '/bin/sh', image.name, '-c', 'true']);
    assert.notEqual(shell.code, 0, 'the image has no shell');
    const sbom = JSON.parse((await readInImage('/app/sbom.cdx.json')).stdout) as { bomFormat: string; components: Array<{ name: string; version: string }> };
    assert.equal(sbom.bomFormat, 'CycloneDX');
    const names = new Set(sbom.components.map((c) => c.name));
    for (const dependency of ['etcd3', '@kubernetes/client-node', '@grpc/grpc-js', 'pino', 'prom-client']) assert.ok(names.has(dependency), `SBOM lists ${dependency}`);
    for (const devDependency of ['typescript', 'esbuild', 'fast-check']) assert.ok(!names.has(devDependency), `SBOM leaves out the dev dependency ${devDependency}`);
  });

  it('becomes ready, serves /healthz, /readyz and /metrics, and registers an annotated pod with its exact value', async () => {
    await eventually('the container ready (/readyz 200)', async () => (await get('/readyz').catch(() => ({ status: 0 }))).status === 200, 60_000);
    process.stderr.write(`[image] ready ${((Date.now() - startedAt) / 1000).toFixed(1)}s after podman run\n`);
    assert.equal((await get('/healthz')).status, 200);
    const metrics = await get('/metrics');
    assert.equal(metrics.status, 200);
    assert.match(metrics.body, /^etcd_registrar_/m);
    await cluster.kubectl(['apply', '-f', '-'], {
      input: JSON.stringify({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'search-1', namespace: NS, annotations: { 'etcd-registrar.io/register': 'true', 'etcd-registrar.io/service': 'search', 'etcd-registrar.io/port': '86' } },
        spec: { nodeName: cluster.nodeNames[0], containers: [{ name: 'app', image: 'x:1' }] },
      }),
    });
    const ip = await waitPodReadyIp(cluster, NS, 'search-1', 60_000);
    const key = `${PREFIX}${ip}-86`;
    await eventually(`${key} in etcd`, async () => (await keyState(cluster.registryAdmin(), key)) !== undefined, 30_000);
    assert.equal((await keyState(cluster.registryAdmin(), key))?.value, `${ip}:86`);
    // RSS at rest, from the kernel (the image has no ps).
    const pid = (await podmanOk(['inspect', '--format', '{{.State.Pid}}', container])).trim();
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    process.stderr.write(`[image] RSS at rest ${/VmRSS:\s+(\d+ kB)/.exec(status)?.[1] ?? '?'}\n`);
  });

  it('runs the chart\'s `helm test` pod command (Node\'s fetch of /readyz in this image) with success', async () => {
    const objects = await template({ set: [`image.repository=${image.name.slice(0, image.name.lastIndexOf(':'))}`, `image.tag=${image.name.slice(image.name.lastIndexOf(':') + 1)}`] });
    const pod = objects.find((o) => o.kind === 'Pod' && o.metadata.annotations?.['helm.sh/hook'] === 'test');
    assert.ok(pod !== undefined, 'the chart has a helm test pod');
    const [testContainer] = (pod['spec'] as { containers: Array<{ image: string; command: string[] }> }).containers;
    assert.ok(testContainer !== undefined);
    assert.equal(testContainer.image, image.name);
    const [entrypoint, ...args] = testContainer.command;
    assert.ok(entrypoint !== undefined);
    // The Service URL the pod would call is the container's metrics address here.
    const result = await podman(['run', '--rm', '--read-only', '--user', `${NONROOT_UID}:${NONROOT_UID}`, '--cap-drop=ALL', '--network', 'host', '--entrypoint', entrypoint, image.name, ...args.slice(0, -1), `${metricsUrl}/readyz`]);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.match(result.stdout, /: 200 /);
  });

  it('writes nothing to its filesystem, and every log line is one JSON object with one key per field', async () => {
    assert.deepEqual(await containerWrites(), [], 'the container changed its filesystem');
    const logs = await podmanOk(['logs', container]);
    const lines = parseLogLinesStrict(logs);
    assert.ok(lines.some((l) => l['audit'] === true && l['action'] === 'register' && l['outcome'] === 'ok'), 'the audit record of the registration');
    assert.ok(lines.every((l) => l['component'] === 'etcd-registrar'));
  });

  it('SIGTERM (podman stop): exits 0 within seconds, keys and lease kept', async () => {
    const [kv] = (await cluster.registryAdmin().getAll().prefix(PREFIX).exec()).kvs;
    assert.ok(kv !== undefined, 'a registration to keep');
    const key = kv.key.toString();
    const started = Date.now();
    await podmanOk(['stop', '--time', '20', container]);
    const seconds = (Date.now() - started) / 1000;
    const exitCode = (await podmanOk(['inspect', '--format', '{{.State.ExitCode}}', container])).trim();
    assert.equal(exitCode, '0', `exit code after SIGTERM (logs: ${(await podman(['logs', '--tail', '5', container])).stdout})`);
    assert.ok(seconds < 5, `stopped in ${seconds.toFixed(1)}s`);
    process.stderr.write(`[image] podman stop took ${seconds.toFixed(1)}s\n`);
    const after = await keyState(cluster.registryAdmin(), key);
    assert.equal(after?.value, kv.value.toString(), 'the key is kept');
    assert.equal(after?.lease, kv.lease, 'on the same lease');
    const ttl = await cluster.registryAdmin().leaseClient.leaseTimeToLive({ ID: kv.lease });
    assert.ok(Number(ttl.TTL) > 0, `the lease is still alive (TTL ${ttl.TTL})`);
    assert.deepEqual(await containerWrites(), [], 'nothing written on the way out either');
  });
});

describe('npm run image', () => {
  it('builds with --tag NAME and prints the name and the size', async () => {
    const tag = `localhost/etcd-registrar:cli-${process.pid}`;
    try {
      const result = await run(process.execPath, [join(repoRoot, 'scripts', 'image.ts'), '--tag', tag], { env: process.env });
      assert.equal(result.code, 0, result.stderr.slice(-2000));
      assert.match(result.stdout, new RegExp(`^${tag.replaceAll('.', '\\.')} \\d+\\.\\d MB \\(uncompressed\\)\\n$`));
      const id = (await podmanOk(['image', 'inspect', '--format', '{{.Id}}', tag])).trim();
      assert.equal(id, image.id, 'the same sources give the same image (layers from the cache)');
    } finally {
      await podman(['untag', tag]);
    }
  });
});

describe('image build failures name their cause in one line', () => {
  it('a base image that is not there (a broken BUILD_IMAGE/RUNTIME_IMAGE argument)', async () => {
    await assert.rejects(
      buildImage({ tag: 'localhost/etcd-registrar:broken-base', buildImage: 'localhost/no-such-base:0', runtimeImage: 'localhost/no-such-runtime:0', log: () => undefined }),
      (error: Error) => {
        assert.equal(error.name, 'ImageToolchainError');
        assert.match(error.message, /^base image BUILD_IMAGE=localhost\/no-such-base:0 is not in local storage/);
        assert.ok(!error.message.includes('\n'), 'one line');
        return true;
      },
    );
  });

  it('a failing Dockerfile step: buildah\'s error with the step\'s own cause (output recorded from a build behind a TLS proxy)', () => {
    const line = lastErrorLine({
      code: 1,
      stdout: '[1/2] STEP 6/11: RUN --mount=type=cache,target=/root/.npm npm ci --ignore-scripts\nnpm error code SELF_SIGNED_CERT_IN_CHAIN\nnpm error errno SELF_SIGNED_CERT_IN_CHAIN\nnpm error request to https://registry.npmjs.org/yargs-parser failed, reason: self-signed certificate in certificate chain\nnpm error A complete log of this run can be found in: /root/.npm/_logs/x.log\nsubprocess exited with status 1\n',
      stderr: 'Error: building at STEP "RUN --mount=type=cache,target=/root/.npm npm ci --ignore-scripts": exit status 1\n',
    });
    assert.equal(line, 'Error: building at STEP "RUN --mount=type=cache,target=/root/.npm npm ci --ignore-scripts": exit status 1: npm error request to https://registry.npmjs.org/yargs-parser failed, reason: self-signed certificate in certificate chain');
  });

  it('a missing tool (podman, buildah, mmdebstrap, runc, strip)', async () => {
    const missing = SYSTEM_PACKAGES.filter((p) => p.name === 'podman').map((p) => ({ ...p, probe: '/nonexistent/podman' }));
    await assert.rejects(checkImageToolchain(missing), /^ImageToolchainError: missing podman \(needed to build and run the image\): run `npm run tools` as root or apt-get install podman$/);
  });
});
