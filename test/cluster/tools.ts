// Versions and cached locations of the binaries the harness runs. They are built by
// `npm run tools` (build-tools.ts) into a per-user cache, never into the repository.
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export const KUBERNETES_VERSION = 'v1.35.4';
export const ETCD_VERSION = 'v3.6.16';
export const KWOK_VERSION = 'v0.8.0';
export const HELM_VERSION = 'v4.3.1';
/**
 * Registry etcd releases besides ETCD_VERSION that `npm run test:compat` (and CI) checks: the
 * latest 3.5 patch the Go module proxy serves. 3.4 is not buildable from the proxy (its
 * v3.4.x tags are not valid versions of the module go.etcd.io/etcd; see docs/compatibility.md).
 */
export const COMPAT_ETCD_VERSIONS: readonly string[] = ['v3.5.35'];
/**
 * Kubernetes releases besides KUBERNETES_VERSION that `npm run test:compat` (and CI) checks: the
 * newest the Go module proxy serves. The pinned 1.35 is also the oldest minor supported upstream.
 */
export const COMPAT_KUBERNETES_VERSIONS: readonly string[] = ['v1.37.2'];
/** Network fault proxy for the fault suite; the newest v2 the Go module proxy serves. */
export const TOXIPROXY_VERSION = 'v2.5.0';
/** Consumers of the registry in the discovery tests: a DNS server and an HTTP load generator. */
export const COREDNS_VERSION = 'v1.15.0';
export const VEGETA_VERSION = 'v12.13.0';

export const TOOL_VERSIONS = {
  'kube-apiserver': KUBERNETES_VERSION,
  'kube-controller-manager': KUBERNETES_VERSION,
  'kube-scheduler': KUBERNETES_VERSION,
  kubectl: KUBERNETES_VERSION,
  etcd: ETCD_VERSION,
  etcdctl: ETCD_VERSION,
  kwok: KWOK_VERSION,
  helm: HELM_VERSION,
  'toxiproxy-server': TOXIPROXY_VERSION,
  coredns: COREDNS_VERSION,
  vegeta: VEGETA_VERSION,
} as const;

export type ToolName = keyof typeof TOOL_VERSIONS;

export const TOOL_NAMES = Object.keys(TOOL_VERSIONS) as ToolName[];

/** Cache root: $ETCD_REGISTRAR_CACHE or ~/.cache/etcd-registrar. */
export function cacheRoot(): string {
  const override = process.env['ETCD_REGISTRAR_CACHE'];
  return override !== undefined && override !== '' ? override : join(homedir(), '.cache', 'etcd-registrar');
}

export function binDir(): string {
  return join(cacheRoot(), 'bin');
}

/**
 * Versions other than the defaults, for the compatibility matrix: the registry etcd (etcd,
 * etcdctl) and the Kubernetes control plane (kube-*, kubectl). Each is built and cached
 * under its own version, beside the defaults.
 */
export interface ToolVersionOverrides {
  readonly etcd?: string | undefined;
  readonly kubernetes?: string | undefined;
}

/** Overrides from the environment: ETCD_REGISTRAR_REGISTRY_ETCD_VERSION, ETCD_REGISTRAR_KUBERNETES_VERSION. */
export function versionOverridesFromEnv(env: NodeJS.ProcessEnv = process.env): ToolVersionOverrides {
  const pick = (name: string): string | undefined => (env[name] === undefined || env[name] === '' ? undefined : env[name]);
  return { etcd: pick('ETCD_REGISTRAR_REGISTRY_ETCD_VERSION'), kubernetes: pick('ETCD_REGISTRAR_KUBERNETES_VERSION') };
}

const KUBERNETES_TOOLS: ReadonlySet<ToolName> = new Set(['kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubectl']);

/** The version of `name` to use: the override of its group, else the default. */
export function toolVersion(name: ToolName, overrides: ToolVersionOverrides = {}): string {
  if ((name === 'etcd' || name === 'etcdctl') && overrides.etcd !== undefined) return overrides.etcd;
  if (KUBERNETES_TOOLS.has(name) && overrides.kubernetes !== undefined) return overrides.kubernetes;
  return TOOL_VERSIONS[name];
}

/** Where the binary for `name` at `version` lives (whether or not it has been built yet). */
export function toolPath(name: ToolName, version: string = TOOL_VERSIONS[name]): string {
  return join(binDir(), `${name}-${version}`);
}

export function missingTools(names: readonly ToolName[] = TOOL_NAMES, overrides: ToolVersionOverrides = {}): ToolName[] {
  return names.filter((name) => !existsSync(toolPath(name, toolVersion(name, overrides))));
}

/** Builds whatever is missing (a no-op with a warm cache) and returns the paths. */
export async function ensureTools(
  names: readonly ToolName[] = TOOL_NAMES,
  overrides: ToolVersionOverrides = {},
): Promise<Record<ToolName, string>> {
  if (missingTools(names, overrides).length > 0) {
    const { buildTools } = await import('./build-tools.ts');
    await buildTools(names, undefined, overrides);
  }
  return Object.fromEntries(TOOL_NAMES.map((n) => [n, toolPath(n, toolVersion(n, overrides))])) as Record<ToolName, string>;
}
