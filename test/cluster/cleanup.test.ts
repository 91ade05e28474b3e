import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { waitFor } from './process.ts';

const ETCD_MODULE = new URL('./etcd.ts', import.meta.url).href;

/** Running (a zombie waiting to be reaped counts as gone). */
function isAlive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** A separate Node process that starts an etcd and then idles until killed. */
async function processWithEtcd(): Promise<{ parent: ReturnType<typeof spawn>; pid: number; dir: string }> {
  const script = `
    import { startEtcd } from ${JSON.stringify(ETCD_MODULE)};
    const etcd = await startEtcd();
    console.log(JSON.stringify({ pid: etcd.pid, dir: etcd.dir }));
    setInterval(() => {}, 1 << 30);`;
  const parent = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [chunk] = (await once(parent.stdout!, 'data')) as [Buffer];
  const started = JSON.parse(chunk.toString('utf8')) as { pid: number; dir: string };
  assert.ok(isAlive(started.pid));
  return { parent, ...started };
}

describe('cleanup when the test process ends abnormally', () => {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    it(`kills processes and removes directories on ${signal}`, async () => {
      const { parent, pid, dir } = await processWithEtcd();
      parent.kill(signal);
      await once(parent, 'exit');
      await waitFor('etcd to be gone', async () => !isAlive(pid), { timeoutMs: 2000 });
      assert.equal(existsSync(dir), false);
    });
  }

  it('kills processes and removes directories even on SIGKILL (watchdog)', async () => {
    const { parent, pid, dir } = await processWithEtcd();
    parent.kill('SIGKILL');
    await once(parent, 'exit');
    await waitFor('the watchdog to kill etcd and remove its dir', async () => !isAlive(pid) && !existsSync(dir), {
      timeoutMs: 6000,
      intervalMs: 200,
    });
  });
});
