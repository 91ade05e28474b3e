// `npm run tools`: builds the control-plane binaries from their Go modules into the
// per-user cache (see tools.ts). Cached binaries are reused, so a warm run takes seconds.
import { spawn, spawnSync } from 'node:child_process';
import { createWriteStream, existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  binDir,
  cacheRoot,
  ETCD_VERSION,
  HELM_VERSION,
  KUBERNETES_VERSION,
  KWOK_VERSION,
  missingTools,
  toolPath,
  toolVersion,
  TOXIPROXY_VERSION,
  TOOL_NAMES,
  type ToolName,
  type ToolVersionOverrides,
  versionOverridesFromEnv,
} from './tools.ts';
import { ensureSystemPackages, SYSTEM_PACKAGES, SystemPackageError } from './system-packages.ts';

const MODULES_DIR = join(dirname(fileURLToPath(import.meta.url)), 'tools');
const MIN_GO_MINOR = 26; // kwok v0.8 and helm v4 need Go 1.26
const PROGRESS_EVERY_MS = 10_000;

/** One `go build`/`go install` invocation producing one or more binaries. */
interface BuildGroup {
  label: string;
  version: string;
  /** Cached tool name -> file name the go command writes. */
  outputs: Partial<Record<ToolName, string>>;
  cwd?: string;
  args: (outDir: string) => string[];
  env?: (outDir: string) => NodeJS.ProcessEnv;
  /** Writes the module `cwd` a non-default version is built from (see versionedModule). */
  prepare?: (log: (line: string) => void) => Promise<void>;
}

// Same CGO/trimpath/tags as upstream release builds; keeping them stable keeps the Go
// build cache valid, so only linking reruns when ldflags change.
function etcdGroup(version: string): BuildGroup {
  const cwd = version === ETCD_VERSION ? join(MODULES_DIR, 'etcd') : versionedModuleDir('etcd', version);
  const packages = ['go.etcd.io/etcd/server/v3', 'go.etcd.io/etcd/etcdctl/v3'];
  return {
    label: 'etcd',
    version,
    outputs: { etcd: 'server', etcdctl: 'etcdctl' },
    cwd,
    ...(version === ETCD_VERSION ? {} : { prepare: (log: (line: string) => void) => versionedModule(cwd, 'go 1.26.0', packages.map((p) => `${p}@${version}`), log) }),
    args: (out) => ['build', '-v', '-trimpath', ...modFlag(version !== ETCD_VERSION), '-ldflags', '-s -w', '-o', `${out}/`, ...packages],
  };
}

const GROUPS: BuildGroup[] = [
  {
    label: 'kwok',
    version: KWOK_VERSION,
    outputs: { kwok: 'kwok' },
    args: () => ['install', '-v', '-trimpath', '-ldflags', '-s -w', `sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}`],
    env: (out) => ({ GOBIN: out }),
  },
  {
    label: 'helm',
    version: HELM_VERSION,
    outputs: { helm: 'helm' },
    args: () => [
      'install', '-v', '-trimpath',
      '-ldflags', `-s -w -X helm.sh/helm/v4/internal/version.version=${HELM_VERSION}`,
      `helm.sh/helm/v4/cmd/helm@${HELM_VERSION}`,
    ],
    env: (out) => ({ GOBIN: out }),
  },
  {
    // Network faults (partitions, latency, resets) between the controller and etcd or the API server.
    label: 'toxiproxy',
    version: TOXIPROXY_VERSION,
    outputs: { 'toxiproxy-server': 'server' },
    args: () => [
      'install', '-v', '-trimpath',
      '-ldflags', `-s -w -X github.com/Shopify/toxiproxy/v2.Version=${TOXIPROXY_VERSION}`,
      `github.com/Shopify/toxiproxy/v2/cmd/server@${TOXIPROXY_VERSION}`,
    ],
    env: (out) => ({ GOBIN: out }),
  },
];

/** etcd and Kubernetes at the requested versions (see ToolVersionOverrides), the rest as pinned. */
function groupsFor(overrides: ToolVersionOverrides): BuildGroup[] {
  return [etcdGroup(toolVersion('etcd', overrides)), ...GROUPS, kubernetesGroup(toolVersion('kube-apiserver', overrides))];
}

const KUBERNETES_COMMANDS = ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubectl'].map((cmd) => `k8s.io/kubernetes/cmd/${cmd}`);

function kubernetesGroup(version: string): BuildGroup {
  const cwd = version === KUBERNETES_VERSION ? join(MODULES_DIR, 'kubernetes') : versionedModuleDir('kubernetes', version);
  return {
    label: 'kubernetes',
    version,
    outputs: {
      'kube-apiserver': 'kube-apiserver',
      'kube-controller-manager': 'kube-controller-manager',
      'kube-scheduler': 'kube-scheduler',
      kubectl: 'kubectl',
    },
    cwd,
    ...(version === KUBERNETES_VERSION ? {} : { prepare: (log: (line: string) => void) => kubernetesModule(cwd, version, log) }),
    // One invocation for all four so the shared packages compile once.
    args: (out) => [
      'build', '-v', '-trimpath', ...modFlag(version !== KUBERNETES_VERSION), '-tags', 'selinux,notest',
      '-ldflags', `-s -w ${kubernetesVersionFlags(version)}`, '-o', `${out}/`,
      ...KUBERNETES_COMMANDS,
    ],
  };
}

/** A generated module may lack go.sum lines for indirect packages: let go fill them in. */
function modFlag(generated: boolean): string[] {
  return generated ? ['-mod=mod'] : [];
}

/** Where the module for a non-default version is generated (in the cache, never the repository). */
function versionedModuleDir(label: string, version: string): string {
  return join(cacheRoot(), 'modules', `${label}-${version}`);
}

/** A module requiring `packages` (path@version), written once per version. */
async function versionedModule(dir: string, goLine: string, packages: readonly string[], log: (line: string) => void, replaces = ''): Promise<void> {
  if (existsSync(join(dir, 'go.sum'))) return;
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'go.mod'), `module etcd-registrar.local/tools/versioned\n\n${goLine}\n${replaces}`);
  log(`[modules] resolving ${packages.join(' ')} in ${dir}`);
  const tail: string[] = [];
  const code = await runGo(['get', ...packages], dir, { ...process.env, CGO_ENABLED: '0' }, (line) => {
    tail.push(line);
    if (tail.length > 15) tail.shift();
  });
  if (code !== 0) {
    await rm(join(dir, 'go.sum'), { force: true });
    throw new BuildError(`go get ${packages.join(' ')} failed (code ${code}):\n${tail.join('\n')}`);
  }
}

/**
 * k8s.io/kubernetes requires its staging modules at v0.0.0 (replaced by ./staging paths
 * upstream): the default module's replace block, moved to the staging release v0.MINOR.PATCH.
 */
async function kubernetesModule(dir: string, version: string, log: (line: string) => void): Promise<void> {
  const text = await readFile(join(MODULES_DIR, 'kubernetes', 'go.mod'), 'utf8');
  const block = /replace \([\s\S]*?\n\)/.exec(text)?.[0];
  if (block === undefined) throw new BuildError('test/cluster/tools/kubernetes/go.mod has no replace block');
  const staging = `v0${version.slice(version.indexOf('.'))}`;
  const replaces = block.replaceAll(`v0${KUBERNETES_VERSION.slice(KUBERNETES_VERSION.indexOf('.'))}`, staging);
  await versionedModule(dir, 'go 1.25.0', KUBERNETES_COMMANDS.map((cmd) => `${cmd}@${version}`), log, `\n${replaces}\n`);
}

/** Without these /version reports v0.0.0-master, which breaks version-parsing clients. */
function kubernetesVersionFlags(version: string): string {
  const [major, minor] = version.slice(1).split('.');
  const vars = {
    gitVersion: version,
    gitMajor: major ?? '',
    gitMinor: minor ?? '',
    gitTreeState: 'clean',
    gitCommit: `${version}-from-go-module`,
    buildDate: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
  };
  return ['k8s.io/component-base/version', 'k8s.io/client-go/pkg/version']
    .flatMap((pkg) => Object.entries(vars).map(([k, v]) => `-X ${pkg}.${k}=${v}`))
    .join(' ');
}

export class BuildError extends Error {
  override name = 'BuildError';
}

function checkGo(): void {
  const res = spawnSync('go', ['version'], { encoding: 'utf8' });
  if (res.error !== undefined) {
    throw new BuildError(`go not found on PATH: install Go 1.${MIN_GO_MINOR} or newer (https://go.dev/dl/)`);
  }
  const minor = /go1\.(\d+)/.exec(res.stdout)?.[1];
  if (minor === undefined || Number(minor) < MIN_GO_MINOR) {
    throw new BuildError(`Go 1.${MIN_GO_MINOR} or newer required, found: ${res.stdout.trim()}`);
  }
}

function formatDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

/** Lines of `go` output that mean a module could not be fetched. */
const DOWNLOAD_FAILURE =
  /(dial tcp|no such host|proxy\.golang\.org|reading https?:|verifying .*: |missing go\.sum entry|unrecognized import path|module lookup disabled|410 Gone|404 Not Found|i\/o timeout|TLS handshake|connection refused)/;

async function runGroup(group: BuildGroup, log: (line: string) => void): Promise<void> {
  const logsDir = join(cacheRoot(), 'logs');
  await mkdir(logsDir, { recursive: true });
  await mkdir(binDir(), { recursive: true });
  const outDir = await mkdtemp(join(binDir(), `.build-${group.label}-`));
  const logPath = join(logsDir, `${group.label}.log`);
  const logFile = createWriteStream(logPath);
  const started = Date.now();
  let compiled = 0;
  let downloaded = 0;
  const tail: string[] = [];
  const onLine = (line: string): void => {
    logFile.write(`${line}\n`);
    tail.push(line);
    if (tail.length > 15) tail.shift();
    if (line.startsWith('go: downloading ')) downloaded++;
    else if (/^[\w.-]+(\/[\w.~-]+)*$/.test(line)) compiled++; // `-v` prints one package path per line
  };
  const progress = setInterval(() => {
    const dl = downloaded > 0 ? `${downloaded} modules downloaded, ` : '';
    log(`[${group.label}] ${dl}${compiled} packages compiled, ${formatDuration(Date.now() - started)}`);
  }, PROGRESS_EVERY_MS);
  try {
    const code = await runGo(group.args(outDir), group.cwd, { ...process.env, CGO_ENABLED: '0', ...group.env?.(outDir) }, onLine);
    if (code !== 0) {
      const cause = tail.some((l) => DOWNLOAD_FAILURE.test(l)) ? 'module download failed' : `go exited with code ${code}`;
      throw new BuildError(`[${group.label}] build failed: ${cause} (full log: ${logPath})\n${tail.join('\n')}`);
    }
    for (const [tool, file] of Object.entries(group.outputs) as [ToolName, string][]) {
      const built = join(outDir, file);
      if (!existsSync(built)) throw new BuildError(`[${group.label}] build produced no ${file} (log: ${logPath})`);
      await chmod(built, 0o755);
      await rename(built, toolPath(tool, group.version));
    }
    log(`[${group.label}] built in ${formatDuration(Date.now() - started)} (${compiled} packages compiled)`);
  } finally {
    clearInterval(progress);
    logFile.end();
    await rm(outDir, { recursive: true, force: true });
  }
}

function runGo(
  args: string[],
  cwd: string | undefined,
  env: NodeJS.ProcessEnv,
  onLine: (line: string) => void,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn('go', args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let pending = '';
    const consume = (chunk: Buffer): void => {
      pending += chunk.toString('utf8');
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) onLine(line);
    };
    child.stdout.on('data', consume);
    child.stderr.on('data', consume);
    child.once('error', reject);
    child.once('close', (code) => {
      if (pending !== '') onLine(pending);
      resolve(code ?? 1);
    });
  });
}

/** Builds every group that owns at least one missing tool among `names`. */
export async function buildTools(
  names: readonly ToolName[],
  log: (line: string) => void = (line) => console.error(line),
  overrides: ToolVersionOverrides = {},
): Promise<void> {
  const missing = new Set(missingTools(names, overrides));
  const groups = groupsFor(overrides).filter((g) => Object.keys(g.outputs).some((t) => missing.has(t as ToolName)));
  if (groups.length === 0) return;
  checkGo();
  for (const group of groups) {
    log(`[${group.label}] building ${Object.keys(group.outputs).join(', ')} ${group.version}...`);
    await group.prepare?.(log);
    await runGroup(group, log);
  }
}

async function main(): Promise<void> {
  const started = Date.now();
  try {
    ensureSystemPackages(SYSTEM_PACKAGES, (line) => console.log(line));
    // `npm run tools -- --registry-etcd-version V --kubernetes-version V` also builds those
    // versions (cached beside the defaults); so do the ETCD_REGISTRAR_* variables.
    const { values } = parseArgs({ options: { 'registry-etcd-version': { type: 'string' }, 'kubernetes-version': { type: 'string' } } });
    const fromEnv = versionOverridesFromEnv();
    await buildTools(TOOL_NAMES, (line) => console.log(line));
    const overrides = { etcd: values['registry-etcd-version'] ?? fromEnv.etcd, kubernetes: values['kubernetes-version'] ?? fromEnv.kubernetes };
    if (overrides.etcd !== undefined || overrides.kubernetes !== undefined) await buildTools(TOOL_NAMES, (line) => console.log(line), overrides);
  } catch (err) {
    const known = err instanceof BuildError || err instanceof SystemPackageError;
    console.error(known ? err.message : `build failed: ${String(err)}`);
    process.exit(1);
  }
  console.log(`tools ready in ${binDir()} (${formatDuration(Date.now() - started)})`);
}

if (import.meta.main) await main();
