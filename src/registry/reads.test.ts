// Unit test of the pure part of the registry's reads (the reads themselves need etcd: registry.test.ts).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CurrentEntry } from '../types.ts';
import { keepScoped, type ScopedRead } from './reads.ts';

function entry(key: string, lease: string): [string, CurrentEntry] {
  return [key, { key, value: 'v', lease, modRevision: '1' }];
}

test('keepScoped keeps the relevant directories and our keys elsewhere, or everything when the root is relevant', () => {
  const read: ScopedRead = {
    entries: new Map([entry('/svc/a/1', '9'), entry('/svc/b/1', '50'), entry('/svc/c/1', '9'), entry('/svc/top', '9')]),
    directories: ['/svc/'],
    revision: '12',
  };
  const ours = (lease: string): boolean => lease === '50';
  const kept = keepScoped(read, new Set(['/svc/a/']), '/svc/', ours);
  assert.deepEqual([...kept.entries.keys()], ['/svc/a/1', '/svc/b/1']);
  assert.deepEqual([kept.directories, kept.revision], [['/svc/'], '12']);
  assert.equal(keepScoped(read, new Set(['/svc/']), '/svc/', ours), read);
});
