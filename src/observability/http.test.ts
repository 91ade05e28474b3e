import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { HealthServer } from './http.ts';
import { Metrics } from './metrics.ts';

describe('HealthServer', () => {
  it('serves healthz, readyz with the reason, and Prometheus metrics on loopback', async () => {
    let notReady: string | undefined = 'pod cache not synced';
    const metrics = new Metrics({ queueDepth: () => 3, lastKeepaliveAt: () => undefined, ownedKeys: () => 7, watchedPods: () => 9 });
    metrics.changes.inc({ action: 'register', outcome: 'ok' });
    const server = new HealthServer({ notReadyReason: () => notReady }, metrics.registry, { latency: () => [{ key: '/k', change: 'registration' }] });
    const { port } = await server.listen('127.0.0.1', 0);
    try {
      const get = async (path: string): Promise<[number, string]> => {
        const response = await fetch(`http://127.0.0.1:${port}${path}`);
        return [response.status, await response.text()];
      };
      assert.deepEqual(await get('/healthz'), [200, 'ok\n']);
      assert.deepEqual(await get('/readyz'), [503, 'not ready: pod cache not synced\n']);
      notReady = undefined;
      assert.deepEqual(await get('/readyz'), [200, 'ok\n']);
      const [status, text] = await get('/metrics');
      assert.equal(status, 200);
      assert.match(text, /etcd_registrar_changes_total\{action="register",outcome="ok"\} 1/);
      assert.match(text, /etcd_registrar_queue_depth 3/);
      assert.match(text, /etcd_registrar_registrations 7/);
      assert.match(text, /etcd_registrar_lease_keepalive_age_seconds -1/);
      assert.deepEqual(await get('/debug/latency'), [200, '[{"key":"/k","change":"registration"}]']);
      assert.equal((await get('/nope'))[0], 404);
    } finally {
      await server.close();
    }
  });
});
