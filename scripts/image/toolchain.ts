// The container toolchain the image build and the image test use: podman, buildah,
// mmdebstrap, runc and strip, run the way that works on this project's CI machines
// (as root; runc instead of crun, cgroupfs, no default rlimits; buildah with chroot
// isolation). Every failure becomes an ImageToolchainError with one line naming the cause.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cacheRoot } from '../../test/cluster/tools.ts';
import { missingSystemPackages, SYSTEM_PACKAGES, type SystemPackage } from '../../test/cluster/system-packages.ts';

export class ImageToolchainError extends Error {
  override name = 'ImageToolchainError';
}

/** Where base-image archives and the containers.conf live. */
export function imageCacheDir(): string {
  return join(cacheRoot(), 'images');
}

// crun fails here on setrlimit and on hybrid cgroups, so podman gets runc and no default
// ulimits or pids limit; the same file is handed to buildah.
const CONTAINERS_CONF = '[containers]\ndefault_ulimits = []\npids_limit = 0\n';

export function containersEnv(): NodeJS.ProcessEnv {
  const dir = imageCacheDir();
  mkdirSync(dir, { recursive: true });
  const path = join(dir, 'containers.conf');
  writeFileSync(path, CONTAINERS_CONF);
  return { ...process.env, CONTAINERS_CONF: path };
}

/** podman's global flags that make `podman run` work on this machine kind. */
export const PODMAN_GLOBAL_FLAGS = ['--runtime', 'runc', '--cgroup-manager=cgroupfs'] as const;

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  /** Called with every output line (progress). */
  readonly onLine?: (line: string) => void;
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
}

/** Runs a command to completion; never rejects for a non-zero exit (the caller decides). */
export function run(command: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, [...args], { env: opts.env ?? containersEnv(), cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let partial = '';
    const lines = (chunk: Buffer): void => {
      if (opts.onLine === undefined) return;
      partial += chunk.toString('utf8');
      const parts = partial.split('\n');
      partial = parts.pop() ?? '';
      for (const line of parts) opts.onLine(line);
    };
    child.stdout.on('data', (chunk: Buffer) => {
      out.push(chunk);
      lines(chunk);
    });
    child.stderr.on('data', (chunk: Buffer) => {
      err.push(chunk);
      lines(chunk);
    });
    child.on('error', (error) => reject(new ImageToolchainError(`${command}: could not start (${error.message})`)));
    child.on('close', (code, signal) => {
      if (partial !== '') opts.onLine?.(partial);
      resolve({ code: code ?? (signal === null ? 1 : 128), stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
  });
}

/** The last meaningful line of a failed command's output: what went wrong, in one line. */
export function lastErrorLine(result: RunResult): string {
  const lines = `${result.stdout}\n${result.stderr}`.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  const error = lines.findLast((l) => /^(Error|error|E:|fatal)\b/.test(l));
  // buildah ends with `Error: building at STEP "…": exit status 1`; the step's own first
  // error line (npm, tsc, esbuild) says why.
  const cause = error?.includes('building at STEP') === true
    ? lines.find((l) => /^npm error (?!code|errno|A complete log)|error TS\d+|\[ERROR\]/.test(l))
    : undefined;
  return `${error ?? lines.at(-1) ?? `exit ${result.code}`}${cause === undefined ? '' : `: ${cause}`}`.slice(0, 400);
}

/** Runs a command and throws one line naming it and its error when it fails. */
export async function runOk(command: string, args: readonly string[], opts: RunOptions = {}): Promise<string> {
  const result = await run(command, args, opts);
  if (result.code !== 0) throw new ImageToolchainError(`${command} ${args.slice(0, 3).join(' ')} failed: ${lastErrorLine(result)}`);
  return result.stdout;
}

export function podman(args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return run('podman', [...PODMAN_GLOBAL_FLAGS, ...args], opts);
}

export function podmanOk(args: readonly string[], opts: RunOptions = {}): Promise<string> {
  return runOk('podman', [...PODMAN_GLOBAL_FLAGS, ...args], opts);
}

const IMAGE_TOOLS = ['mmdebstrap', 'buildah', 'podman', 'runc', 'binutils'];

/**
 * Checks what the image build and run need, before anything slow starts: the Debian
 * packages, root (podman and buildah run rootful here), and a kernel that gives podman
 * its storage (overlay) and namespaces. Throws one line naming the first missing piece.
 */
export async function checkImageToolchain(packages: readonly SystemPackage[] = SYSTEM_PACKAGES.filter((p) => IMAGE_TOOLS.includes(p.name))): Promise<void> {
  const missing = missingSystemPackages(packages);
  if (missing.length > 0) {
    const names = missing.map((p) => p.name).join(' ');
    throw new ImageToolchainError(`missing ${names} (needed to build and run the image): run \`npm run tools\` as root or apt-get install ${names}`);
  }
  if (process.getuid?.() !== 0) {
    throw new ImageToolchainError('building and running the image needs root here (rootful podman/buildah; mmdebstrap makes root-owned files)');
  }
  const info = await podman(['info', '--format', '{{.Store.GraphDriverName}}']);
  if (info.code !== 0) throw new ImageToolchainError(`podman cannot start on this kernel/machine: ${lastErrorLine(info)}`);
  // podman, buildah and runc need these namespaces from the kernel.
  if (!existsSync('/proc/self/ns/mnt') || !existsSync('/proc/self/ns/pid')) {
    throw new ImageToolchainError('the kernel has no mount/pid namespaces, which podman needs to run the image');
  }
}
