// The registry's reads against a real etcd that compacts the revision a paginated read is pinned
// to, between two of its pages. The compaction is real (etcd's Compact RPC at the head revision);
// the client passed to the read forwards every call to etcd and only chooses the moment.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Etcd3, IRangeRequest } from 'etcd3';
import { DirectoryMarkers } from './directories.ts';
import { observer, putForeign, startEtcd, type EtcdServer } from './fixture.test.ts';
import { readEverything, type ReadContext } from './reads.ts';
import { isCompacted } from './retry.ts';

describe('a read overtaken by compaction', () => {
  let etcd: EtcdServer;
  let client: Etcd3;

  before(async () => {
    etcd = await startEtcd();
    client = observer(etcd.endpoints);
  });

  after(async () => {
    client?.close();
    await etcd?.destroy();
  });

  /**
   * A ReadContext over `client` whose pinned range calls (a page at a given revision) first let
   * `beforePinnedPage` write and compact; `errors` collects what the read's retry hooks saw.
   */
  function context(root: string, beforePinnedPage: (page: number) => Promise<void>): { ctx: ReadContext; errors: unknown[] } {
    const errors: unknown[] = [];
    let pinnedPages = 0;
    const kv = {
      range: async (req: IRangeRequest) => {
        if (req.revision !== undefined) await beforePinnedPage(++pinnedPages);
        return client.kv.range(req);
      },
    };
    const ctx: ReadContext = {
      client: { kv } as unknown as Etcd3,
      space: { root, reserved: [] },
      markers: new DirectoryMarkers(root, `/etcd-registrar/owners/compaction-${process.pid}`),
      retry: { attempts: 1, baseDelayMs: 10, maxDelayMs: 10, budgetMs: 1_000 },
      pageSize: 10,
      hooks: () => ({ onError: (err) => errors.push(err) }),
    };
    return { ctx, errors };
  }

  /** Writes `key` and compacts etcd at the revision of that write: every older revision is gone. */
  async function writeAndCompact(key: string): Promise<string> {
    const put = await client.kv.put({ key: Buffer.from(key), value: Buffer.from('late') });
    await client.kv.compact({ revision: put.header.revision, physical: true });
    return put.header.revision;
  }

  test('starts again at the current revision and misses no key, the one written meanwhile included', async () => {
    const root = '/compacted-once/';
    const keys = Array.from({ length: 35 }, (_, i) => `${root}svc_PRE/10.0.0.${i}-80`);
    await putForeign(client, keys);
    const late = `${root}svc_PRE/10.0.1.1-80`;
    let compactedAt = '';
    // After the first page (10 of 35 keys) has been read at the pinned revision.
    const { ctx, errors } = context(root, async (page) => {
      if (page === 2) compactedAt = await writeAndCompact(late);
    });

    const read = await readEverything(ctx, () => [root], () => false);

    assert.ok(compactedAt !== '', 'the compaction ran between two pages');
    assert.deepEqual([...read.entries.keys()].sort(), [...keys, late].sort());
    assert.equal(read.entries.get(late)?.value, 'late');
    assert.ok(BigInt(read.revision) >= BigInt(compactedAt), `read at ${read.revision}, compacted at ${compactedAt}`);
    assert.equal(errors.length, 1);
    assert.ok(isCompacted(errors[0]), String(errors[0]));
  });

  test('a compaction before every page ends the read with the compaction error after three restarts', async () => {
    const root = '/compacted-always/';
    await putForeign(client, Array.from({ length: 25 }, (_, i) => `${root}svc_PRE/10.0.0.${i}-80`));
    let compactions = 0;
    const { ctx, errors } = context(root, async () => {
      compactions++;
      await writeAndCompact(`${root}svc_PRE/late-${compactions}`);
    });

    await assert.rejects(readEverything(ctx, () => [root], () => false), (err) => isCompacted(err));
    // The first attempt and three restarts, each failing on its first pinned page.
    assert.equal(compactions, 4);
    assert.equal(errors.length, 4);
    assert.ok(errors.every(isCompacted));
  });
});
