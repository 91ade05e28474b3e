// Docs that stay true: every decision record is in the index, every index link resolves, and
// the docs never lean on a design text that is not in this repository.
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { repoRoot } from '../e2e/support.ts';

const decisionsDir = join(repoRoot, 'docs', 'decisions');

test('docs/decisions/README.md links every record, and every link is a record', async () => {
  const records = (await readdir(decisionsDir)).filter((f) => /^\d{4}-.*\.md$/.test(f)).sort();
  const index = await readFile(join(decisionsDir, 'README.md'), 'utf8');
  const linked = [...index.matchAll(/\]\((\d{4}-[^)]+\.md)\)/g)].map((m) => m[1]).sort();
  assert.deepEqual(linked, records);
});

test('source and docs cite no design document outside the repository', async () => {
  const offenders: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) await walk(path);
      else if (/\.(ts|md)$/.test(entry.name) && /DESIGN(\.md| §)/.test(await readFile(path, 'utf8'))) offenders.push(path);
    }
  };
  for (const dir of ['src', 'docs', 'bench', 'scripts', 'test']) await walk(join(repoRoot, dir));
  assert.deepEqual(offenders, []);
});
