// The node source keeps only name -> zone label (the list/watch loop itself is covered by
// namespace-source.test.ts; the real API server by test/e2e/zone.test.ts).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import type { V1Node } from '@kubernetes/client-node';
import type { ObjectListPage, ObjectTransport } from './namespace-source.ts';
import { NodeSource, ZONE_LABEL, type NodeEvent } from './node-source.ts';

function node(name: string, zone: string | undefined, rv: string): V1Node {
  return {
    metadata: {
      name,
      resourceVersion: rv,
      labels: { 'kubernetes.io/hostname': name, ...(zone === undefined ? {} : { [ZONE_LABEL]: zone }) },
      annotations: { big: 'x'.repeat(1000) },
    },
    status: { capacity: { cpu: '4' } },
  };
}

class ScriptedTransport implements ObjectTransport {
  lists: ObjectListPage[] = [];
  watches: Array<{ onEvent: (type: string, object: unknown) => void; onDone: (err: unknown) => void; resourceVersion: string }> = [];
  async list(): Promise<ObjectListPage> {
    const page = this.lists.shift();
    if (page === undefined) throw new Error('no list scripted');
    return page;
  }
  async watch(req: { resourceVersion: string }, onEvent: (type: string, object: unknown) => void, onDone: (err: unknown) => void): Promise<{ abort(): void }> {
    this.watches.push({ onEvent, onDone, resourceVersion: req.resourceVersion });
    return { abort: () => undefined };
  }
}

async function until(what: string, check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

describe('NodeSource', () => {
  it('keeps name -> zone only, reports zone changes, and forgets deleted nodes', async () => {
    const transport = new ScriptedTransport();
    transport.lists.push({ items: [node('n1', 'zone-a', '5'), node('n2', undefined, '6')], resourceVersion: '7', continueToken: undefined });
    const source = new NodeSource({ transport, logger: pino({ level: 'silent' }), backoff: { initialMs: 1, maxMs: 5 }, random: () => 0.5 });
    const events: NodeEvent[] = [];
    source.onChange((event) => events.push(event));
    assert.equal(source.zone('n1'), undefined, 'unknown before the list');
    await source.start();
    assert.equal(source.zone('n1'), 'zone-a');
    assert.equal(source.zone('n2'), '', 'a node without the label is known, with an empty zone');
    assert.equal(source.zone('n3'), undefined);
    assert.deepEqual(events, [
      { type: 'upsert', name: 'n1', value: 'zone-a' },
      { type: 'upsert', name: 'n2', value: '' },
    ]);
    await until('the watch', () => transport.watches.length === 1);
    const watch = transport.watches[0];
    assert.equal(watch?.resourceVersion, '7');
    events.length = 0;
    // A status-only update (heartbeat) changes nothing: no event.
    watch?.onEvent('MODIFIED', node('n1', 'zone-a', '8'));
    assert.deepEqual(events, []);
    watch?.onEvent('MODIFIED', node('n1', 'zone-b', '9'));
    watch?.onEvent('ADDED', node('n3', 'zone-c', '10'));
    watch?.onEvent('DELETED', node('n2', undefined, '11'));
    assert.deepEqual(events, [
      { type: 'upsert', name: 'n1', value: 'zone-b' },
      { type: 'upsert', name: 'n3', value: 'zone-c' },
      { type: 'delete', name: 'n2' },
    ]);
    assert.equal(source.zone('n1'), 'zone-b');
    assert.equal(source.zone('n2'), undefined, 'a deleted node is unknown again');
    assert.equal(source.size, 2);
    await source.stop();
  });
});
