// The discovery scenarios of `npm run discovery`, as a test: every scenario must send real
// traffic and lose none of it (0 failed requests), and pods must actually come and go.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatReport, runDiscovery, SCENARIOS } from './discovery.ts';

test('nginx routes through CoreDNS with 0 failed requests through rollouts, scaling, a leader kill and mass deletes', async () => {
  const report = await runDiscovery({ log: (line) => process.stderr.write(`# ${line}\n`) });
  process.stdout.write(`${formatReport(report).replace(/^/gm, '# ')}\n`);
  for (const name of SCENARIOS) {
    const r = report.scenarios[name];
    assert.ok(r !== undefined, `${name} ran`);
    assert.ok(r.requests > 0, `${name}: requests were sent`);
    assert.equal(r.failed, 0, `${name}: ${r.failed} of ${r.requests} requests failed: ${JSON.stringify(r.failures)} (upstreams ${JSON.stringify(r.failedUpstreams)})`);
    assert.ok(r.terminated > 0 && r.started > 0, `${name}: pods terminated and started`);
    assert.ok(r.terminationToDnsGone.count > 0, `${name}: terminating pods were seen leaving DNS`);
    assert.ok(r.readyToFirstServed.count > 0, `${name}: new pods served traffic`);
  }
});
