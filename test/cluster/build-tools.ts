// `npm run tools`: builds the control-plane binaries from their Go modules into the
// per-user cache (see tools.ts). Cached binaries are reused, so a warm run takes seconds.
import { spawn, spawnSync } from 'node:child_process';
import { createWriteStream, existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  binDir,
  cacheRoot,
  ETCD_VERSION,
  HELM_VERSION,
  KUBERNETES_VERSION,
  KWOK_VERSION,
  missingTools,
  toolPath,
  TOXIPROXY_VERSION,
  TOOL_NAMES,
  type ToolName,
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
}

// Same CGO/trimpath/tags as upstream release builds; keeping them stable keeps the Go
// build cache valid, so only linking reruns when ldflags change.
const GROUPS: BuildGroup[] = [
  {
    label: 'etcd',
    version: ETCD_VERSION,
    outputs: { etcd: 'server', etcdctl: 'etcdctl' },
    cwd: join(MODULES_DIR, 'etcd'),
    args: (out) => [
      'build', '-v', '-trimpath', '-ldflags', '-s -w', '-o', `${out}/`,
      'go.etcd.io/etcd/server/v3', 'go.etcd.io/etcd/etcdctl/v3',
    ],
  },
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
  {
    label: 'kubernetes',
    version: KUBERNETES_VERSION,
    outputs: {
      'kube-apiserver': 'kube-apiserver',
      'kube-controller-manager': 'kube-controller-manager',
      'kube-scheduler': 'kube-scheduler',
      kubectl: 'kubectl',
    },
    cwd: join(MODULES_DIR, 'kubernetes'),
    // One invocation for all four so the shared packages compile once.
    args: (out) => [
      'build', '-v', '-trimpath', '-tags', 'selinux,notest',
      '-ldflags', `-s -w ${kubernetesVersionFlags()}`, '-o', `${out}/`,
      ...['kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubectl'].map(
        (cmd) => `k8s.io/kubernetes/cmd/${cmd}`,
      ),
    ],
  },
];

/** Without these /version reports v0.0.0-master, which breaks version-parsing clients. */
function kubernetesVersionFlags(): string {
  const [major, minor] = KUBERNETES_VERSION.slice(1).split('.');
  const vars = {
    gitVersion: KUBERNETES_VERSION,
    gitMajor: major ?? '',
    gitMinor: minor ?? '',
    gitTreeState: 'clean',
    gitCommit: `${KUBERNETES_VERSION}-from-go-module`,
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
      await rename(built, toolPath(tool));
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
): Promise<void> {
  const missing = new Set(missingTools(names));
  const groups = GROUPS.filter((g) => Object.keys(g.outputs).some((t) => missing.has(t as ToolName)));
  if (groups.length === 0) return;
  checkGo();
  for (const group of groups) {
    log(`[${group.label}] building ${Object.keys(group.outputs).join(', ')} ${group.version}...`);
    await runGroup(group, log);
  }
}

async function main(): Promise<void> {
  const started = Date.now();
  try {
    ensureSystemPackages(SYSTEM_PACKAGES, (line) => console.log(line));
    await buildTools(TOOL_NAMES, (line) => console.log(line));
  } catch (err) {
    const known = err instanceof BuildError || err instanceof SystemPackageError;
    console.error(known ? err.message : `build failed: ${String(err)}`);
    process.exit(1);
  }
  console.log(`tools ready in ${binDir()} (${formatDuration(Date.now() - started)})`);
}

if (import.meta.main) await main();
