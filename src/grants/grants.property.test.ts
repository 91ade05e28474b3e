// Hostile Namespace annotations: whatever text an admin (or a mistake) puts in
// allowed-services, parsing never throws, keeps only well-formed patterns, and its problem
// lines stay short and printable (they go to logs and Events).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { MAX_GRANT_ENTRIES, parseGrantList, serviceMatches } from './grants.ts';

const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

const piece = fc.oneof(
  fc.constantFrom('search', 'web', '*', 'shop-*', '**', '*a', '../x', 'a/b', '', ' ', '\u0000', 'é', 'x'.repeat(64), 'x'.repeat(5000), ',', ', ,'),
  fc.string({ unit: 'grapheme', maxLength: 30 }),
  fc.string({ unit: fc.constantFrom('a', '*', ',', ' ', '.', '-', '\n', '\u0000'), maxLength: 40 }),
);
const annotation = fc.oneof(
  fc.array(piece, { maxLength: 40 }).map((parts) => parts.join(',')),
  fc.integer({ min: 0, max: 3000 }).map((n) => Array.from({ length: n }, (_, i) => `svc-${i}`).join(',')),
  fc.string({ unit: 'binary', maxLength: 200 }),
);

describe('parseGrantList (property)', () => {
  it('never throws; keeps only names, "*" or "name*"; bounded, printable problems', () => {
    fc.assert(
      fc.property(annotation, (text) => {
        const { patterns, problems } = parseGrantList(text);
        assert.ok(patterns.length <= MAX_GRANT_ENTRIES);
        for (const pattern of patterns) {
          const name = pattern.endsWith('*') ? pattern.slice(0, -1) : pattern;
          assert.ok(pattern === '*' || NAME.test(name), `pattern ${JSON.stringify(pattern)}`);
          if (pattern !== '*') assert.ok(serviceMatches([pattern], name));
        }
        assert.ok(problems.length <= MAX_GRANT_ENTRIES + 1);
        for (const line of problems) {
          assert.ok(!CONTROL.test(line), `control character in ${JSON.stringify(line)}`);
          assert.ok(line.length <= 400, `problem line of ${line.length} chars`);
        }
      }),
      { numRuns: 10_000 },
    );
  });
});
