// `npm run discovery [-- --json FILE] [--scenario NAME ...]`: service discovery end to end on a
// fresh local cluster (CoreDNS, nginx, pod servers, two controller replicas, vegeta) through
// the four scenarios of test/discovery/discovery.ts; prints a table, optionally writes the
// figures as JSON, and exits 1 if any request failed.
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { formatReport, runDiscovery, SCENARIOS, type ScenarioName } from '../test/discovery/discovery.ts';

const { values } = parseArgs({ options: { json: { type: 'string' }, scenario: { type: 'string', multiple: true } } });
const unknown = (values.scenario ?? []).filter((s) => !(SCENARIOS as readonly string[]).includes(s));
if (unknown.length > 0) {
  console.error(`--scenario: unknown ${unknown.join(', ')} (known: ${SCENARIOS.join(', ')})`);
  process.exit(2);
}
const started = Date.now();
const report = await runDiscovery({
  log: (line) => console.error(`[discovery] ${line}`),
  ...(values.scenario === undefined ? {} : { scenarios: values.scenario as ScenarioName[] }),
});
console.log(formatReport(report));
for (const [name, r] of Object.entries(report.scenarios)) {
  if (r.failed > 0) console.log(`${name}: failures ${JSON.stringify(r.failures)}, upstreams ${JSON.stringify(r.failedUpstreams)}`);
}
console.log(`done in ${Math.round((Date.now() - started) / 1000)} s`);
if (values.json !== undefined) {
  await writeFile(values.json, `${JSON.stringify(report.scenarios, null, 2)}\n`);
  console.log(`figures written to ${values.json}`);
}
process.exit(Object.values(report.scenarios).some((r) => r.failed > 0) ? 1 : 0);
