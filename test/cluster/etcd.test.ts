import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { startEtcd, type EtcdServer } from './etcd.ts';
import { toolPath } from './tools.ts';

const run = promisify(execFile);

async function etcdctl(etcd: EtcdServer, ...args: string[]): Promise<string> {
  const { stdout } = await run(toolPath('etcdctl'), [`--endpoints=${etcd.endpoints.join(',')}`, ...args]);
  return stdout;
}

describe('startEtcd', () => {
  let etcd: EtcdServer;

  before(async () => {
    etcd = await startEtcd({ name: 'test' });
  });

  after(async () => {
    await etcd?.destroy();
  });

  it('serves a healthy member on a loopback port', async () => {
    assert.match(etcd.endpoints[0] ?? '', /^http:\/\/127\.0\.0\.1:\d+$/);
    await etcdctl(etcd, 'put', '/k', 'v1');
    assert.equal(await etcdctl(etcd, 'get', '/k', '--print-value-only'), 'v1\n');
  });

  it('restarts on the same endpoint and data after stop and after SIGKILL', async () => {
    const endpoints = [...etcd.endpoints];
    await etcd.stop();
    assert.equal(etcd.isRunning(), false);
    await etcd.start();
    assert.deepEqual(etcd.endpoints, endpoints);
    assert.equal(await etcdctl(etcd, 'get', '/k', '--print-value-only'), 'v1\n');

    await etcd.kill('SIGKILL');
    assert.equal(etcd.isRunning(), false);
    await assert.rejects(fetch(`${endpoints[0]}/health`));
    await etcd.start();
    assert.equal(await etcdctl(etcd, 'get', '/k', '--print-value-only'), 'v1\n');
  });

  it('runs independent members side by side', async () => {
    const other = await startEtcd();
    try {
      assert.notDeepEqual(other.endpoints, etcd.endpoints);
      assert.equal(await etcdctl(other, 'get', '/k', '--print-value-only'), '');
    } finally {
      await other.destroy();
    }
    assert.equal(existsSync(other.dir), false);
  });

  it('reports a failed start with the end of the log', async () => {
    await assert.rejects(startEtcd({ extraArgs: ['--no-such-flag'] }), /no-such-flag/);
  });
});
