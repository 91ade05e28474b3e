// The namespace list/watch loop against a scripted transport (the real API server is
// exercised by test/e2e/grants.test.ts).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import type { V1Namespace } from '@kubernetes/client-node';
import { NamespaceSource, type NamespaceEvent, type NamespaceListPage, type NamespaceTransport } from './namespace-source.ts';

const ANNOTATION = 'etcd-registrar.io/allowed-services';

function ns(name: string, value?: string, rv = '1'): V1Namespace {
  return { metadata: { name, resourceVersion: rv, annotations: value === undefined ? { other: 'x' } : { [ANNOTATION]: value } } };
}

interface OpenWatch {
  readonly resourceVersion: string;
  readonly onEvent: (type: string, object: unknown) => void;
  readonly onDone: (err: unknown) => void;
  aborted: boolean;
}

class ScriptedTransport implements NamespaceTransport {
  lists: Array<NamespaceListPage[] | Error> = [];
  readonly watches: OpenWatch[] = [];
  listCalls = 0;
  #pages: NamespaceListPage[] = [];
  async list(req: { continueToken: string | undefined }): Promise<NamespaceListPage> {
    if (req.continueToken === undefined) {
      this.listCalls++;
      const next = this.lists.shift();
      if (next === undefined) throw new Error('no list scripted');
      if (next instanceof Error) throw next;
      this.#pages = [...next];
    }
    const page = this.#pages.shift();
    if (page === undefined) throw new Error('no page');
    return page;
  }
  async watch(req: { resourceVersion: string }, onEvent: OpenWatch['onEvent'], onDone: OpenWatch['onDone']): Promise<{ abort(): void }> {
    const open: OpenWatch = { resourceVersion: req.resourceVersion, onEvent, onDone, aborted: false };
    this.watches.push(open);
    return { abort: () => { open.aborted = true; } };
  }
  get current(): OpenWatch {
    const last = this.watches.at(-1);
    assert.ok(last !== undefined && !last.aborted, 'an open watch');
    return last;
  }
}

async function until(what: string, check: () => boolean, timeoutMs = 2_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

function setup(transport: ScriptedTransport): { source: NamespaceSource; events: NamespaceEvent[] } {
  const source = new NamespaceSource({
    transport,
    annotation: ANNOTATION,
    logger: pino({ level: 'silent' }),
    backoff: { initialMs: 1, maxMs: 5 },
    random: () => 0.5,
  });
  const events: NamespaceEvent[] = [];
  source.onChange((event) => events.push(event));
  return { source, events };
}

describe('NamespaceSource', () => {
  it('lists every page, then reports only annotation changes from the watch', async () => {
    const transport = new ScriptedTransport();
    transport.lists.push([
      { items: [ns('team-a', 'search')], resourceVersion: '', continueToken: 'c1' },
      { items: [ns('team-b')], resourceVersion: '10', continueToken: undefined },
    ]);
    const { source, events } = setup(transport);
    assert.equal(source.synced(), false);
    await source.start();
    assert.equal(source.synced(), true);
    assert.deepEqual(events, [
      { type: 'upsert', name: 'team-a', value: 'search' },
      { type: 'upsert', name: 'team-b', value: undefined },
    ]);
    await until('watch opened', () => transport.watches.length === 1);
    assert.equal(transport.current.resourceVersion, '10');
    events.length = 0;
    transport.current.onEvent('MODIFIED', ns('team-a', 'search', '11')); // labels changed, say: nothing to report
    transport.current.onEvent('MODIFIED', ns('team-b', 'search', '12'));
    transport.current.onEvent('ADDED', ns('team-c', undefined, '13'));
    transport.current.onEvent('BOOKMARK', { metadata: { resourceVersion: '14' } });
    transport.current.onEvent('DELETED', ns('team-a', 'search', '15'));
    assert.deepEqual(events, [
      { type: 'upsert', name: 'team-b', value: 'search' },
      { type: 'upsert', name: 'team-c', value: undefined },
      { type: 'delete', name: 'team-a' },
    ]);
    assert.equal(source.annotation('team-b'), 'search');
    assert.equal(source.has('team-a'), false);
    // A normal close resumes from the last resourceVersion, without a relist.
    transport.current.onDone(null);
    await until('watch reopened', () => transport.watches.length === 2);
    assert.equal(transport.current.resourceVersion, '15');
    assert.equal(transport.listCalls, 1);
    await source.stop();
  });

  it('goes stale on a watch error, keeps the last grants, and relists reporting only differences', async () => {
    const transport = new ScriptedTransport();
    transport.lists.push([{ items: [ns('team-a', 'search'), ns('team-b', 'web')], resourceVersion: '5', continueToken: undefined }]);
    const { source, events } = setup(transport);
    await source.start();
    await until('watch opened', () => transport.watches.length === 1);
    events.length = 0;
    transport.lists.push(new Error('connection refused'));
    transport.lists.push([{ items: [ns('team-a', 'search'), ns('team-c', 'x')], resourceVersion: '9', continueToken: undefined }]);
    transport.current.onEvent('ERROR', { code: 500, message: 'boom' });
    assert.equal(source.synced(), false);
    assert.equal(source.annotation('team-b'), 'web', 'the stale cache keeps what it knew');
    await until('relisted', () => source.synced());
    assert.equal(transport.listCalls, 3);
    assert.deepEqual(events, [
      { type: 'delete', name: 'team-b' },
      { type: 'upsert', name: 'team-c', value: 'x' },
    ]);
    await until('watch reopened', () => transport.watches.length === 2);
    assert.equal(transport.current.resourceVersion, '9');
    await source.stop();
  });

  it('retries the first list until it succeeds; stop() before that rejects start()', async () => {
    const transport = new ScriptedTransport();
    transport.lists.push(new Error('forbidden'), new Error('forbidden'), [{ items: [], resourceVersion: '1', continueToken: undefined }]);
    const { source } = setup(transport);
    await source.start();
    assert.equal(transport.listCalls, 3);
    await source.stop();

    const never = new ScriptedTransport();
    for (let i = 0; i < 1000; i++) never.lists.push(new Error('forbidden'));
    const { source: blocked } = setup(never);
    const started = blocked.start();
    await until('a few attempts', () => never.listCalls >= 2);
    await blocked.stop();
    await assert.rejects(started, /stopped before its cache synced/);
  });
});
