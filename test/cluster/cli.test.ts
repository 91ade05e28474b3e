import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { parseUpOptions, upArgs, UP_OPTIONS, type UpOptions } from './cli.ts';
import { ETCD_VERSION, KUBERNETES_VERSION } from './tools.ts';

const run = promisify(execFile);
const CLI = fileURLToPath(new URL('./cli.ts', import.meta.url));

function cli(...args: string[]): Promise<{ stdout: string; stderr: string }> {
  return run(process.execPath, [CLI, ...args]);
}

function parseEnv(path: string): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const match of readFileSync(path, 'utf8').matchAll(/^export (\w+)='([^']*)'$/gm)) {
    const [, key, value] = match;
    if (key !== undefined && value !== undefined) vars[key] = value;
  }
  return vars;
}

function pidsOf(dir: string): number[] {
  return readFileSync(join(dir, 'pids'), 'utf8')
    .trim()
    .split('\n')
    .map((line) => Number(line.split(' ')[1]));
}

/** Running (not a zombie waiting to be reaped). */
function isAlive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

describe('cluster CLI', () => {
  let base: string | undefined;

  after(async () => {
    if (base === undefined) return;
    for (const name of ['one', 'two']) {
      if (existsSync(join(base, name))) await cli('down', '--dir', join(base, name));
    }
    await rm(base, { recursive: true, force: true });
  });

  it('runs two clusters side by side and leaves nothing behind after down', async () => {
    base = await mkdtemp(join(tmpdir(), 'cluster-cli-'));
    const dirs = [join(base, 'one'), join(base, 'two')];
    await Promise.all(dirs.map((dir) => cli('up', '--dir', dir)));

    const envs = dirs.map((dir) => parseEnv(join(dir, 'env')));
    const [a, b] = envs;
    assert.ok(a !== undefined && b !== undefined);
    assert.notEqual(a['KUBE_APISERVER_URL'], b['KUBE_APISERVER_URL']);
    assert.notEqual(a['ETCD_ENDPOINTS'], b['ETCD_ENDPOINTS']);
    for (const env of envs) {
      for (const key of ['KUBECONFIG', 'ETCD_ENDPOINTS', 'KUBECTL', 'ETCDCTL', 'HELM']) {
        assert.ok(env[key] !== undefined && env[key] !== '', `${key} missing from env file`);
      }
      const kubectl = env['KUBECTL'] ?? '';
      const { stdout } = await run(kubectl, ['--kubeconfig', env['KUBECONFIG'] ?? '', 'get', 'nodes', '-o', 'name']);
      assert.equal(stdout.trim().split('\n').length, 3);
      const health = await run(env['ETCDCTL'] ?? '', ['--endpoints', env['ETCD_ENDPOINTS'] ?? '', 'endpoint', 'health']);
      assert.match(health.stdout + health.stderr, /is healthy/);
    }
    const { stdout: status } = await cli('status', '--dir', dirs[0] ?? '');
    assert.match(status, /kube-apiserver\s+pid \d+\s+running/);

    const pids = dirs.flatMap(pidsOf);
    assert.equal(pids.length, 14, 'supervisor + 6 processes per cluster');
    assert.ok(pids.every(isAlive));
    await Promise.all(dirs.map((dir) => cli('down', '--dir', dir)));
    assert.deepEqual(pids.filter(isAlive), []);
    for (const dir of dirs) assert.equal(existsSync(dir), false, `${dir} still exists`);
  });
});

describe('cluster CLI up options', () => {
  const parse = (args: string[]): UpOptions =>
    parseUpOptions(parseArgs({ args, options: UP_OPTIONS }).values);

  it('defaults to one plain registry member', () => {
    assert.deepEqual(parse([]), { nodes: 3, registryMembers: 1, registryTls: false, registryAuth: false, registryKeyRoot: '/', registryEtcdVersion: ETCD_VERSION, kubernetesVersion: KUBERNETES_VERSION });
  });

  it('passes every registry option on to the supervisor unchanged', () => {
    const args = ['--nodes', '2', '--registry-members', '3', '--registry-tls', '--registry-auth', '--registry-key-root', '/services/', '--registry-etcd-version', 'v3.5.35', '--kubernetes-version', 'v1.34.1'];
    const opts = parse(args);
    assert.deepEqual(opts, { nodes: 2, registryMembers: 3, registryTls: true, registryAuth: true, registryKeyRoot: '/services/', registryEtcdVersion: 'v3.5.35', kubernetesVersion: 'v1.34.1' });
    assert.deepEqual(parse(upArgs(opts)), opts);
  });

  it('rejects member counts other than 1 and 3, and a key root without a leading /', () => {
    assert.throws(() => parse(['--registry-members', '2']), /--registry-members: 2 must be 1 or 3/);
    assert.throws(() => parse(['--registry-key-root', 'services/']), /--registry-key-root/);
    assert.throws(() => parse(['--nodes', '0']), /--nodes/);
    assert.throws(() => parse(['--registry-etcd-version', '3.5']), /--registry-etcd-version: 3.5 is not a release version/);
  });
});
