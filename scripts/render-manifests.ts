// Renders the plain Kubernetes manifests in deploy/ from the Helm chart, so that people who
// install with `kubectl apply` get exactly what the chart installs with its defaults (plus
// deploy/values.yaml). `npm run manifests` rewrites deploy/etcd-registrar.yaml; the chart
// tests fail when the file has drifted from the chart.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ensureTools } from '../test/cluster/tools.ts';

const execFileAsync = promisify(execFile);

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
export const chartDir = join(repoRoot, 'charts', 'etcd-registrar');
export const manifestsPath = join(repoRoot, 'deploy', 'etcd-registrar.yaml');
export const deployValuesPath = join(repoRoot, 'deploy', 'values.yaml');
export const RELEASE = 'etcd-registrar';
export const NAMESPACE = 'etcd-registrar';

/** helm binary: $HELM, else the harness's cached helm (built on first use). */
async function helmPath(): Promise<string> {
  const fromEnv = process.env['HELM'];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  return (await ensureTools(['helm'])).helm;
}

/** The plain manifests: a Namespace, then `helm template` of the chart (no test hooks). */
export async function renderManifests(): Promise<string> {
  const helm = await helmPath();
  const args = ['template', RELEASE, chartDir, '--namespace', NAMESPACE, '--skip-tests'];
  if (existsSync(deployValuesPath)) args.push('--values', deployValuesPath);
  const { stdout } = await execFileAsync(helm, args, { maxBuffer: 64 * 1024 * 1024 });
  const header = [
    '# etcd-registrar: plain Kubernetes manifests, GENERATED from charts/etcd-registrar',
    `# by \`npm run manifests\` (helm template ${RELEASE} --namespace ${NAMESPACE}${existsSync(deployValuesPath) ? ' --values deploy/values.yaml' : ''}).`,
    '# Do not edit it in the repository: change the chart or deploy/values.yaml and re-render. Install with',
    '#   kubectl apply --server-side -f deploy/etcd-registrar.yaml',
    '---',
    'apiVersion: v1',
    'kind: Namespace',
    'metadata:',
    `  name: ${NAMESPACE}`,
    '  labels:',
    `    app.kubernetes.io/name: ${RELEASE}`,
    '    pod-security.kubernetes.io/enforce: restricted',
    '',
  ].join('\n');
  return `${header}${stdout.trimEnd()}\n`;
}

export async function writeManifests(): Promise<string> {
  const text = await renderManifests();
  await writeFile(manifestsPath, text);
  return manifestsPath;
}

export async function manifestsUpToDate(): Promise<boolean> {
  const [expected, actual] = await Promise.all([renderManifests(), readFile(manifestsPath, 'utf8').catch(() => '')]);
  return expected === actual;
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const path = await writeManifests();
  process.stdout.write(`wrote ${relative(process.cwd(), path)}\n`);
}
