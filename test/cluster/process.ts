// Child-process plumbing shared by the etcd and cluster harnesses: logs to files,
// readiness polling, free loopback ports, and cleanup when the test process ends.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ManagedProcess {
  readonly name: string;
  readonly pid: number;
  readonly logPath: string;
  /** Resolves when the process has exited (never rejects). */
  readonly exited: Promise<ExitStatus>;
  isRunning(): boolean;
  signal(signal: NodeJS.Signals): void;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

export interface SpawnOptions {
  name: string;
  command: string;
  args: readonly string[];
  logPath: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

const live = new Set<ManagedProcess>();
const ownedDirs = new Set<string>();
let handlersInstalled = false;

export function spawnManaged(opts: SpawnOptions): ManagedProcess {
  const log = openSync(opts.logPath, 'a');
  let child: ChildProcess;
  try {
    child = spawn(opts.command, [...opts.args], {
      stdio: ['ignore', log, log],
      env: opts.env ?? process.env,
      cwd: opts.cwd,
    });
  } finally {
    closeSync(log);
  }
  if (child.pid === undefined) {
    throw new Error(`${opts.name}: could not spawn ${opts.command}`);
  }
  let status: ExitStatus | undefined;
  const exited = new Promise<ExitStatus>((resolve) => {
    const done = (s: ExitStatus): void => {
      status ??= s;
      resolve(status);
    };
    child.once('exit', (code, signal) => done({ code, signal }));
    child.once('error', () => done({ code: -1, signal: null }));
  });
  const pid = child.pid;
  const proc: ManagedProcess = {
    name: opts.name,
    pid,
    logPath: opts.logPath,
    exited,
    isRunning: () => status === undefined,
    signal: (sig) => {
      if (status === undefined) child.kill(sig);
    },
    stop: async (graceMs = 10_000) => {
      if (status === undefined) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
        await exited;
        clearTimeout(timer);
      }
      track(() => live.delete(proc));
    },
  };
  track(() => live.add(proc));
  void exited.then(() => track(() => live.delete(proc)));
  return proc;
}

/** Directories removed when this Node process exits, unless released first. */
export function ownDir(dir: string): void {
  track(() => ownedDirs.add(dir));
}

export function releaseDir(dir: string): void {
  track(() => ownedDirs.delete(dir));
}

function track(change: () => void): void {
  installExitHandlers();
  change();
  writeWatchdogState();
}

function cleanupNow(): void {
  for (const proc of live) proc.signal('SIGKILL');
  live.clear();
  for (const dir of ownedDirs) rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  ownedDirs.clear();
  rmSync(watchdogState, { force: true });
}

// Exit and signal handlers cannot run when this process is SIGKILLed (an outer timeout,
// the OOM killer). A detached shell polls for that and then kills what is listed in the
// state file, so no apiserver or etcd outlives the test run.
const watchdogState = join(tmpdir(), `etcd-registrar-watchdog-${process.pid}`);
const WATCHDOG_SCRIPT = `
while kill -0 "$1" 2>/dev/null; do sleep 2; done
[ -f "$2" ] || exit 0
while read -r kind value; do
  case "$kind" in pid) kill -9 "$value" 2>/dev/null ;; dir) rm -rf "$value" ;; esac
done < "$2"
rm -f "$2"`;

function writeWatchdogState(): void {
  const lines = [...[...live].map((p) => `pid ${p.pid}`), ...[...ownedDirs].map((d) => `dir ${d}`)];
  writeFileSync(watchdogState, lines.join('\n') + '\n');
}

function startWatchdog(): void {
  spawn('/bin/sh', ['-c', WATCHDOG_SCRIPT, 'etcd-registrar-watchdog', String(process.pid), watchdogState], {
    detached: true,
    stdio: 'ignore',
  }).unref();
}

function installExitHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  startWatchdog();
  process.once('exit', cleanupNow);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      cleanupNow();
      // Re-raise so the exit status still says "killed by signal".
      process.kill(process.pid, sig);
    });
  }
}

export function tailFile(path: string, lines = 20): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return '(no log)';
  }
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

export class StartError extends Error {
  override name = 'StartError';
}

/** Error describing why `proc` did not become ready, with the end of its log. */
export function startFailure(proc: ManagedProcess, reason: string, lines = 20): StartError {
  return new StartError(
    `${proc.name} ${reason} (log ${proc.logPath}); last lines:\n${tailFile(proc.logPath, lines)}`,
  );
}

export interface WaitOptions {
  timeoutMs: number;
  intervalMs?: number;
  /** Fail as soon as this process exits instead of waiting out the timeout. */
  process?: ManagedProcess;
}

/**
 * Polls `check` until it returns a value other than undefined/false.
 * Throws with `what` on timeout, or a StartError if the watched process exits.
 * The timeout counts on the monotonic clock: when the host pauses the VM (a snapshot), the
 * wall clock jumps ahead on resume and would expire a wait that had barely run.
 */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false>,
  opts: WaitOptions,
): Promise<T> {
  const deadline = performance.now() + opts.timeoutMs;
  const interval = opts.intervalMs ?? 100;
  let lastError: unknown;
  for (;;) {
    if (opts.process !== undefined && !opts.process.isRunning()) {
      const s = await opts.process.exited;
      throw startFailure(opts.process, `exited (code ${s.code}, signal ${s.signal}) while waiting for ${what}`);
    }
    try {
      const result = await check();
      if (result !== undefined && result !== false) return result;
    } catch (err) {
      lastError = err;
    }
    if (performance.now() > deadline) {
      const detail = lastError instanceof Error ? `: ${lastError.message}` : '';
      if (opts.process !== undefined) {
        throw startFailure(opts.process, `not ready after ${opts.timeoutMs} ms waiting for ${what}${detail}`);
      }
      throw new Error(`timed out after ${opts.timeoutMs} ms waiting for ${what}${detail}`);
    }
    await sleep(interval);
  }
}

const handedOut = new Set<number>();

/**
 * A free loopback port below the kernel's ephemeral range (32768+), so it cannot be
 * taken in the meantime by an outgoing connection of a process we start.
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    if (handedOut.has(port)) continue;
    if (await canListen(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error('no free loopback port found in 20000-31999');
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => {
      server.close(() => resolve(true));
    });
  });
}

export function isAddressInUse(logPath: string): boolean {
  return /address already in use/i.test(tailFile(logPath, 40));
}
