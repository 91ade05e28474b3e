// Helpers of the chart tests: run helm and kubectl from the harness's tool cache and parse
// rendered manifests.
import { execFile } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { toolPath } from '../cluster/tools.ts';

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const chartDir = join(repoRoot, 'charts', 'etcd-registrar');
export const valuesAllPath = join(repoRoot, 'test', 'chart', 'values-all.yaml');
export const helmBin = (): string => process.env['HELM'] ?? toolPath('helm');

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs helm; never rejects, so tests can assert on failures and their messages. */
export function helm(args: readonly string[], env: Record<string, string> = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(
      helmBin(),
      [...args],
      { maxBuffer: 64 * 1024 * 1024, env: { ...process.env, ...env } },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : 1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

let packaged: Promise<string> | undefined;

/**
 * The chart as users get it: `helm package` into a temp dir, once per test process. The
 * install tests use this .tgz, not the folder, so a file the package leaves out is caught.
 */
export function packagedChart(): Promise<string> {
  packaged ??= (async () => {
    const dir = await mkdtemp(join(tmpdir(), 'etcd-registrar-chart-'));
    const out = await helmOk(['package', chartDir, '--destination', dir]);
    const match = /saved it to: (\S+\.tgz)/.exec(out);
    if (match?.[1] === undefined) throw new Error(`helm package printed no path: ${out}`);
    return match[1];
  })();
  return packaged;
}

/** Runs helm and rejects with its stderr on failure. */
export async function helmOk(args: readonly string[], env: Record<string, string> = {}): Promise<string> {
  const result = await helm(args, env);
  if (result.code !== 0) throw new Error(`helm ${args.join(' ')} failed (${result.code}): ${result.stderr.trim()}`);
  return result.stdout;
}

/** A Kubernetes object as rendered: just enough typing for the tests. */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  [field: string]: unknown;
}

export function parseManifests(text: string): K8sObject[] {
  const docs = parseAllDocuments(text).map((doc) => {
    if (doc.errors.length > 0) throw new Error(`invalid YAML: ${doc.errors.map((e) => e.message).join('; ')}`);
    return doc.toJS() as unknown;
  });
  return docs.filter((doc): doc is K8sObject => typeof doc === 'object' && doc !== null);
}

export interface TemplateOptions {
  readonly release?: string;
  readonly namespace?: string;
  readonly valuesFiles?: readonly string[];
  readonly set?: readonly string[];
  readonly extra?: readonly string[];
  /** The chart folder (default) or a packaged .tgz. */
  readonly chart?: string;
}

export function templateArgs(opts: TemplateOptions = {}): string[] {
  const args = ['template', opts.release ?? 'test', opts.chart ?? chartDir, '--namespace', opts.namespace ?? 'etcd-registrar'];
  for (const file of opts.valuesFiles ?? []) args.push('--values', file);
  for (const pair of opts.set ?? []) args.push('--set', pair);
  args.push(...(opts.extra ?? []));
  return args;
}

/** helm template, parsed. */
export async function template(opts: TemplateOptions = {}): Promise<K8sObject[]> {
  return parseManifests(await helmOk(templateArgs(opts)));
}

export function find(objects: readonly K8sObject[], kind: string, name?: string): K8sObject {
  const found = objects.find((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (found === undefined) {
    throw new Error(`no ${kind}${name === undefined ? '' : ` ${name}`} in ${objects.map((o) => `${o.kind}/${o.metadata.name}`).join(', ')}`);
  }
  return found;
}

// Shapes of the parts of a Deployment the tests read.
export interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  env?: { name: string; value?: string; valueFrom?: unknown }[];
  ports?: { name: string; containerPort: number }[];
  securityContext?: Record<string, unknown>;
  livenessProbe?: { httpGet?: { path: string; port: string | number } };
  readinessProbe?: { httpGet?: { path: string; port: string | number } };
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
  resources?: unknown;
}

export interface PodSpec {
  serviceAccountName?: string;
  automountServiceAccountToken?: boolean;
  securityContext?: Record<string, unknown>;
  containers: Container[];
  volumes?: { name: string; secret?: { secretName: string; defaultMode?: number; items?: { key: string; path: string }[] } }[];
  [field: string]: unknown;
}

export interface DeploymentSpec {
  replicas: number;
  selector: { matchLabels: Record<string, string> };
  template: { metadata: { labels: Record<string, string>; annotations?: Record<string, string> }; spec: PodSpec };
  [field: string]: unknown;
}

export function deploymentSpec(objects: readonly K8sObject[]): DeploymentSpec {
  return find(objects, 'Deployment')['spec'] as DeploymentSpec;
}

export function controllerContainer(objects: readonly K8sObject[]): Container {
  const container = deploymentSpec(objects).template.spec.containers.find((c) => c.name === 'controller');
  if (container === undefined) throw new Error('no controller container');
  return container;
}
