// The README's flag table is the user-facing contract of the command line: it must list
// every flag with its variable, default and meaning exactly as the parser knows them.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { envName, flagSpecs } from '../../src/config.ts';
import { repoRoot } from '../e2e/support.ts';

/** The README row for a flag, in the table's format. */
export function flagRow(spec: (typeof flagSpecs)[number]): string {
  const fallback = spec.default === undefined || spec.default === '' ? '' : `\`${spec.default}\``;
  const only = spec.commands === undefined ? '' : ` (${spec.commands.join(', ')} only)`;
  return `| \`--${spec.name}\` | \`${envName(spec.name)}\` | ${fallback} | ${spec.description}${only} |`;
}

test('README flag table matches the flags the parser knows, in order', async () => {
  const readme = await readFile(join(repoRoot, 'README.md'), 'utf8');
  const rows = readme.split('\n').filter((line) => line.startsWith('| `--'));
  assert.deepEqual(rows, flagSpecs.map(flagRow));
});
