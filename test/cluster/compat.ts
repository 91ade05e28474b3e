// `npm run test:compat`: the controller's end-to-end subset (register, deregister, reconcile,
// adoption, leader election with fencing, etcd auth/TLS) and the registry's tests against
// every registry etcd release of the compatibility matrix besides the pinned one, then the
// end-to-end subset against every other Kubernetes release of the matrix; the full suite covers
// the pinned ones. Each version is built and cached like the control plane; a cell can be
// reproduced by hand with ETCD_REGISTRAR_REGISTRY_ETCD_VERSION=V or
// ETCD_REGISTRAR_KUBERNETES_VERSION=V (see docs/compatibility.md).
//
//   npm run test:compat                 every cell
//   npm run test:compat -- v3.5.34      those registry etcd releases only
import { spawnSync } from 'node:child_process';
import { buildTools } from './build-tools.ts';
import { COMPAT_ETCD_VERSIONS, COMPAT_KUBERNETES_VERSIONS, type ToolName } from './tools.ts';

/** What the controller needs from the API server: registration, HA with fencing, TLS/auth. */
export const COMPAT_E2E_TESTS = ['test/e2e/controller.test.ts', 'test/e2e/ha.test.ts', 'test/e2e/security.test.ts'];
/** Against another registry etcd, the registry's own tests too. */
export const COMPAT_TESTS = ['src/registry/*.test.ts', ...COMPAT_E2E_TESTS];

interface Cell {
  readonly label: string;
  readonly tools: readonly ToolName[];
  readonly overrides: { readonly etcd?: string; readonly kubernetes?: string };
  readonly env: Readonly<Record<string, string>>;
  readonly tests: readonly string[];
}

function cells(etcdVersions: readonly string[], kubernetesVersions: readonly string[]): Cell[] {
  return [
    ...etcdVersions.map((version) => ({
      label: `registry etcd ${version}`,
      tools: ['etcd', 'etcdctl'] as const,
      overrides: { etcd: version },
      env: { ETCD_REGISTRAR_REGISTRY_ETCD_VERSION: version },
      tests: COMPAT_TESTS,
    })),
    ...kubernetesVersions.map((version) => ({
      label: `Kubernetes ${version}`,
      tools: ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubectl'] as const,
      overrides: { kubernetes: version },
      env: { ETCD_REGISTRAR_KUBERNETES_VERSION: version },
      tests: COMPAT_E2E_TESTS,
    })),
  ];
}

async function main(): Promise<number> {
  const named = process.argv.slice(2);
  const results: string[] = [];
  for (const cell of named.length > 0 ? cells(named, []) : cells(COMPAT_ETCD_VERSIONS, COMPAT_KUBERNETES_VERSIONS)) {
    const started = Date.now();
    console.log(`--- ${cell.label}: building (cached after the first time; a cold Kubernetes build takes 10-16 minutes)`);
    await buildTools(cell.tools, (line) => console.log(line), cell.overrides);
    console.log(`--- ${cell.label}: ${cell.tests.join(' ')}`);
    const run = spawnSync(process.execPath, ['--test', '--test-concurrency=1', '--test-timeout=600000', ...cell.tests], {
      stdio: 'inherit',
      env: { ...process.env, ...cell.env },
    });
    results.push(`${cell.label}: ${run.status === 0 ? 'pass' : `FAIL (exit ${run.status})`} in ${Math.round((Date.now() - started) / 1000)} s`);
  }
  for (const line of results) console.log(line);
  return results.every((line) => line.includes(': pass')) ? 0 : 1;
}

if (import.meta.main) process.exit(await main());
