// Preloaded into the bench's controllers (`--import`) when BENCH_ALLOC_PROF_DIR is set: on each
// SIGCONT (the burst's resume) it samples the allocations for BENCH_ALLOC_PROF_SECONDS (default
// 1.5) and writes them to BENCH_ALLOC_PROF_DIR/alloc-PID-N.heapprofile; `node bench/profile.ts
// FILE` summarises one. Collected objects are counted too: Node's --heap-prof keeps only those
// still alive when it stops, which hides the garbage a burst makes.
import { Session } from 'node:inspector/promises';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.env['BENCH_ALLOC_PROF_DIR'] ?? '';
const seconds = Number(process.env['BENCH_ALLOC_PROF_SECONDS'] ?? '1.5');

if (dir !== '') {
  const session = new Session();
  session.connect();
  let sampling = false;
  let count = 0;
  const sample = async (): Promise<void> => {
    const file = join(dir, `alloc-${process.pid}-${++count}.heapprofile`);
    await session.post('HeapProfiler.startSampling', { samplingInterval: 1024, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
    await new Promise((resolve) => setTimeout(resolve, seconds * 1000).unref());
    const { profile } = await session.post('HeapProfiler.stopSampling');
    writeFileSync(file, JSON.stringify(profile));
  };
  process.on('SIGCONT', () => {
    // A resume while sampling (it lasts longer than a burst) is part of the same window.
    if (sampling) return;
    sampling = true;
    sample().catch((err: unknown) => process.stderr.write(`alloc-profile: ${String(err)}\n`)).finally(() => (sampling = false));
  });
}
