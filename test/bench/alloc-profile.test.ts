// The bench's allocation profiling aid (BENCH_ALLOC_PROF_DIR): a process preloaded with
// bench/alloc-profile.ts samples its allocations, collected ones included, after a SIGCONT, and
// bench/profile.ts attributes them to the functions that made them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { allocations, type AllocationNode } from '../../bench/profile.ts';
import { waitFor } from '../cluster/process.ts';

// Garbage only: each batch of objects is dropped by the next call, so a profile of live objects
// would miss it. The batch is stored where the optimiser cannot see it die: objects that never
// escape their function (as `[{ i }].length` did) are not allocated at all once optimised.
const CHILD = `
let batch = [];
function makeGarbage() { const made = []; for (let i = 0; i < 20000; i++) made.push({ i }); batch = made; return batch.length; }
setInterval(makeGarbage, 5);
process.stdout.write('ready\\n');
`;

test('a SIGCONT starts a sampling window whose profile counts the garbage of the function that made it', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'alloc-profile-'));
  const child = spawn(process.execPath, [`--import=${join(import.meta.dirname, '../../bench/alloc-profile.ts')}`, '-e', CHILD], {
    env: { ...process.env, BENCH_ALLOC_PROF_DIR: dir, BENCH_ALLOC_PROF_SECONDS: '0.3' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    await once(child.stdout, 'data');
    child.kill('SIGCONT');
    const file = await waitFor('an allocation profile', async () => (await readdir(dir)).find((name) => name.endsWith('.heapprofile')), { timeoutMs: 10_000 });
    assert.match(file, new RegExp(`^alloc-${child.pid}-1\\.heapprofile$`));
    const { head } = JSON.parse(await readFile(join(dir, file), 'utf8')) as { head: AllocationNode };
    const { total, self } = allocations(head);
    const garbage = self.find((row) => row.name.startsWith('makeGarbage '));
    assert.ok(garbage !== undefined, `makeGarbage among ${self.slice(0, 5).map((row) => row.name).join(', ')}`);
    // Megabytes on a quiet machine, fewer intervals on a busy one: either way far more than the
    // ~1 KB a profile of live objects would show, and most of what was sampled.
    assert.ok(garbage.bytes > 100 * 1024 && garbage.share > 0.5, `makeGarbage ${garbage.bytes} bytes of ${total}`);
  } finally {
    child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  }
});
