// Unit tests of the directory markers (docs/decisions/0013) without etcd.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { IKeyValue } from 'etcd3';
import { DirectoryMarkers, directoriesToRead, MAX_MARKED_DIRECTORIES } from './directories.ts';

const RECORD = '/etcd-registrar/owners/o1';

function marker(dir: string, lease: string): IKeyValue {
  return { key: Buffer.from(`${RECORD}/dirs${dir}`), value: Buffer.from(dir), lease, mod_revision: '2', create_revision: '2', version: '1' };
}

test('a key\'s directory is its first segment under the root, or the root itself', () => {
  const markers = new DirectoryMarkers('/svc/', RECORD);
  assert.equal(markers.directoryOf('/svc/search_PRE/10.0.0.1-80'), '/svc/search_PRE/');
  assert.equal(markers.directoryOf('/svc/search_PRE/a/b'), '/svc/search_PRE/');
  assert.equal(markers.directoryOf('/svc/flat-key'), '/svc/');
});

test('past MAX_MARKED_DIRECTORIES new directories are marked as the root; known ones stay', () => {
  const markers = new DirectoryMarkers('/', RECORD);
  for (let i = 0; i < MAX_MARKED_DIRECTORIES; i++) assert.equal(markers.directoryOf(`/d${i}/k`), `/d${i}/`);
  assert.equal(markers.directoryOf('/one-too-many/k'), '/');
  assert.equal(markers.directoryOf('/d7/other'), '/d7/');
});

test('the marker of a directory is a put under the owner record, on the lease, valued with the directory', () => {
  const markers = new DirectoryMarkers('/svc/', RECORD);
  assert.equal(markers.prefix, `${RECORD}/dirs/`);
  assert.deepEqual(markers.markerOp('/svc/search_PRE/', '50'), {
    request_put: { key: Buffer.from(`${RECORD}/dirs/svc/search_PRE/`), value: Buffer.from('/svc/search_PRE/'), lease: '50' },
  });
});

test('unmarked: the directories of keys not yet marked on this lease, once each', () => {
  const markers = new DirectoryMarkers('/', RECORD);
  const keys = ['/a/1', '/b/1', '/a/2', '/c/1'];
  assert.deepEqual([...markers.unmarked(keys, '50')], ['/a/', '/b/', '/c/']);
  markers.noteMarked(['/a/', '/b/'], '50');
  assert.deepEqual([...markers.unmarked(keys, '50')], ['/c/']);
  // A marker on another lease (a lease change) is written again on the new one.
  assert.deepEqual([...markers.unmarked(keys, '51')], ['/a/', '/b/', '/c/']);
});

test('noteRead replaces what is marked with the markers read, ignoring other key roots', () => {
  const markers = new DirectoryMarkers('/svc/', RECORD);
  markers.noteMarked(['/svc/stale/'], '50');
  const read = markers.noteRead([marker('/svc/a/', '50'), marker('/old-root/b/', '50'), { ...marker('/svc/c/', '0'), lease: undefined } as unknown as IKeyValue]);
  assert.deepEqual(read, ['/svc/a/', '/svc/c/']);
  assert.deepEqual([...markers.unmarked(['/svc/a/1', '/svc/stale/1', '/svc/c/1'], '50')], ['/svc/stale/', '/svc/c/']);
});

test('directoriesToRead: the root alone when picked, else the directories sorted', () => {
  assert.deepEqual(directoriesToRead(['/svc/b/', '/svc/', '/svc/a/'], '/svc/'), ['/svc/']);
  assert.deepEqual(directoriesToRead(['/svc/b/', '/svc/a/'], '/svc/'), ['/svc/a/', '/svc/b/']);
  assert.deepEqual(directoriesToRead([], '/svc/'), []);
});
