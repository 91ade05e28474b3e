// `npm run test:compat`: the controller's end-to-end subset (register, deregister, reconcile,
// adoption, leader election with fencing, etcd auth/TLS) and the registry's tests against
// every registry etcd release of the compatibility matrix besides the pinned one, which the
// full suite covers. Each version is built and cached like the control plane; a cell can be
// reproduced by hand with ETCD_REGISTRAR_REGISTRY_ETCD_VERSION=V (see docs/compatibility.md).
import { spawnSync } from 'node:child_process';
import { buildTools } from './build-tools.ts';
import { COMPAT_ETCD_VERSIONS, type ToolName } from './tools.ts';

export const COMPAT_TESTS = [
  'src/registry/*.test.ts',
  'test/e2e/controller.test.ts',
  'test/e2e/ha.test.ts',
  'test/e2e/security.test.ts',
];

async function main(): Promise<number> {
  const versions = process.argv.slice(2).length > 0 ? process.argv.slice(2) : COMPAT_ETCD_VERSIONS;
  const results: string[] = [];
  for (const version of versions) {
    const started = Date.now();
    console.log(`--- registry etcd ${version}: building (cached after the first time)`);
    const tools: ToolName[] = ['etcd', 'etcdctl'];
    await buildTools(tools, (line) => console.log(line), { etcd: version });
    console.log(`--- registry etcd ${version}: ${COMPAT_TESTS.join(' ')}`);
    const run = spawnSync(process.execPath, ['--test', '--test-concurrency=1', '--test-timeout=600000', ...COMPAT_TESTS], {
      stdio: 'inherit',
      env: { ...process.env, ETCD_REGISTRAR_REGISTRY_ETCD_VERSION: version },
    });
    results.push(`registry etcd ${version}: ${run.status === 0 ? 'pass' : `FAIL (exit ${run.status})`} in ${Math.round((Date.now() - started) / 1000)} s`);
  }
  for (const line of results) console.log(line);
  return results.every((line) => line.includes(': pass')) ? 0 : 1;
}

if (import.meta.main) process.exit(await main());
