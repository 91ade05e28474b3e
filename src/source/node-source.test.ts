// The node kind keeps only name -> zone label (the loop itself is covered by
// reflector.test.ts; the real API server by test/e2e/zone.test.ts).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { V1Node } from '@kubernetes/client-node';
import { NodeSource, ZONE_LABEL, type NodeEvent } from './node-source.ts';
import { FakeApi, silent, until } from './testing.ts';

function node(name: string, zone: string | undefined): V1Node {
  return {
    metadata: {
      name,
      labels: { 'kubernetes.io/hostname': name, ...(zone === undefined ? {} : { [ZONE_LABEL]: zone }) },
      annotations: { big: 'x'.repeat(1000) },
    },
    status: { capacity: { cpu: '4' } },
  };
}

describe('NodeSource', () => {
  it('keeps name -> zone only, reports zone changes, and forgets deleted nodes', async () => {
    const api = new FakeApi<V1Node>();
    api.put(node('n1', 'zone-a'));
    api.put(node('n2', undefined));
    const source = new NodeSource({ transport: api, logger: silent, backoff: { baseMs: 1, maxMs: 5 }, random: () => 0.5 });
    const events: NodeEvent[] = [];
    source.onChange((event) => events.push(event));
    assert.equal(source.zone('n1'), undefined, 'unknown before the list');
    await source.start();
    assert.equal(source.zone('n1'), 'zone-a');
    assert.equal(source.zone('n2'), '', 'a node without the label is known, with an empty zone');
    assert.equal(source.zone('n3'), undefined);
    assert.deepEqual(source.get('n1'), { name: 'n1', value: 'zone-a' }, 'nothing else of the node is kept');
    assert.deepEqual(events, [
      { type: 'upsert', name: 'n1', value: 'zone-a' },
      { type: 'upsert', name: 'n2', value: '' },
    ]);
    await until('the watch', () => api.live().length === 1);
    assert.equal(api.current.resourceVersion, String(api.rv));
    events.length = 0;
    // A status-only update (heartbeat) changes nothing: no event.
    api.touch('n1');
    assert.deepEqual(events, []);
    api.put(node('n1', 'zone-b'));
    api.put(node('n3', 'zone-c'));
    api.remove('n2');
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
