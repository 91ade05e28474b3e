// Is the machine quiet enough for latency figures? CPU used by processes outside the bench's own
// process tree (the bench, its cluster and controllers), from /proc, over a window; and the load
// average. Linux only: elsewhere nothing can be measured and the check says so.
import { readdirSync, readFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';

/** CPU of processes outside the bench's tree above which figures are refused (cores, i.e. 0.25 = a quarter of one core). */
export const MAX_OTHER_CPU_CORES = 0.25;
/** 1-minute load average per CPU above which a run does not start. */
export const MAX_LOAD_PER_CPU = 2;
const CLOCK_TICKS = 100; // USER_HZ

interface ProcStat {
  readonly ppid: number;
  readonly comm: string;
  readonly ticks: number;
}

export interface CpuSnapshot {
  readonly at: number;
  readonly procs: ReadonlyMap<number, ProcStat>;
}

export interface OtherCpu {
  /** Cores used by processes outside the bench's tree over the window (1 = one core busy). */
  readonly cores: number;
  readonly seconds: number;
  /** The busiest of them: "comm (pid) cores". */
  readonly top: string[];
}

export interface LoadCheck {
  readonly phase: string;
  readonly other_cpu_cores: number;
  readonly window_s: number;
  readonly top: string[];
  readonly loadavg_1m: number;
}

export interface LoadReport {
  readonly cpus: number;
  readonly max_other_cpu_cores: number;
  readonly max_load_per_cpu: number;
  readonly checks: LoadCheck[];
  /** Why the figures of this run cannot be trusted; empty when the machine was quiet. */
  readonly reasons: string[];
  readonly loaded: boolean;
  /** The run was asked to report anyway (--allow-loaded). */
  readonly allowed: boolean;
}

export function cpuSnapshot(): CpuSnapshot {
  const procs = new Map<number, ProcStat>();
  let names: string[] = [];
  try {
    names = readdirSync('/proc');
  } catch {
    return { at: performance.now(), procs };
  }
  for (const name of names) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const comm = stat.slice(stat.indexOf('(') + 1, close);
      // After the command name: state is field 3, ppid 4, utime 14, stime 15.
      const fields = stat.slice(close + 2).split(' ');
      procs.set(pid, { ppid: Number(fields[1]), comm, ticks: Number(fields[11]) + Number(fields[12]) });
    } catch {
      // exited meanwhile
    }
  }
  return { at: performance.now(), procs };
}

function inTree(pid: number, root: number, procs: ReadonlyMap<number, ProcStat>): boolean {
  for (let p = pid, hops = 0; p > 1 && hops < 64; hops++) {
    if (p === root) return true;
    const next = procs.get(p)?.ppid;
    if (next === undefined) return false;
    p = next;
  }
  return false;
}

/** CPU used between two snapshots by processes outside the tree rooted at `root` (default: this process). */
export function otherCpu(before: CpuSnapshot, after: CpuSnapshot, root = process.pid): OtherCpu {
  const seconds = (after.at - before.at) / 1000;
  const users: Array<[string, number]> = [];
  let ticks = 0;
  for (const [pid, stat] of after.procs) {
    if (inTree(pid, root, after.procs)) continue;
    const used = stat.ticks - (before.procs.get(pid)?.ticks ?? stat.ticks);
    if (used <= 0) continue;
    ticks += used;
    users.push([`${stat.comm} (${pid})`, used]);
  }
  const cores = seconds > 0 ? ticks / CLOCK_TICKS / seconds : 0;
  users.sort((a, b) => b[1] - a[1]);
  const top = users.slice(0, 5).map(([name, used]) => `${name} ${(seconds > 0 ? used / CLOCK_TICKS / seconds : 0).toFixed(2)}`);
  return { cores: Math.round(cores * 1000) / 1000, seconds: Math.round(seconds * 10) / 10, top };
}

/** Where a window's CPU went: named processes (with their children), the bench's own tree, the rest. */
export interface CpuBudget {
  readonly window_s: number;
  /** Cores × window: what the machine could have given. */
  readonly capacity_core_s: number;
  /** CPU seconds (user + system) by process name, then "bench" (the rest of this tree) and "other". */
  readonly core_s: Readonly<Record<string, number>>;
  /** All of it over the capacity: 1 = every core busy throughout. */
  readonly busy_share: number;
}

/** "name seconds, ..." of a budget's `core_s`, largest first ('' when nothing ran). */
export function describeCpu(budget: CpuBudget): string {
  return Object.entries(budget.core_s).map(([name, s]) => `${name} ${s}`).join(', ');
}

/**
 * The CPU of every process between two snapshots, attributed to `named` processes (each with its
 * descendants, e.g. a controller started through a shell), the bench's own tree and the others.
 * /proc's counters tick at 100 Hz: each figure is good to ~0.01 s.
 */
export function cpuBudget(before: CpuSnapshot, after: CpuSnapshot, named: ReadonlyArray<{ readonly name: string; readonly pid: number }>, root = process.pid): CpuBudget {
  const seconds = (after.at - before.at) / 1000;
  const ticks = new Map<string, number>();
  for (const [pid, stat] of after.procs) {
    const used = stat.ticks - (before.procs.get(pid)?.ticks ?? 0);
    if (used <= 0) continue;
    const owner = named.find((n) => inTree(pid, n.pid, after.procs))?.name ?? (inTree(pid, root, after.procs) ? 'bench' : 'other');
    ticks.set(owner, (ticks.get(owner) ?? 0) + used);
  }
  const total = [...ticks.values()].reduce((a, b) => a + b, 0) / CLOCK_TICKS;
  const capacity = availableParallelism() * seconds;
  return {
    window_s: Math.round(seconds * 1000) / 1000,
    capacity_core_s: Math.round(capacity * 100) / 100,
    core_s: Object.fromEntries([...ticks].sort((a, b) => b[1] - a[1]).map(([name, t]) => [name, t / CLOCK_TICKS])),
    busy_share: capacity > 0 ? Math.round((total / capacity) * 1000) / 1000 : 0,
  };
}

/** Collects the checks of one run; `loaded` once any check failed. */
export class LoadMonitor {
  readonly #checks: LoadCheck[] = [];
  readonly #reasons: string[] = [];
  readonly #cpus = availableParallelism();
  readonly #allowed: boolean;

  constructor(allowed: boolean) {
    this.#allowed = allowed;
  }

  /**
   * Before anything starts: the load average, given up to `settleMs` to fall below the limit (the
   * previous run's cluster leaves it high for a minute or so), then `ms` of CPU sampling.
   */
  async preflight(ms = 3000, settleMs = 120_000, log: (line: string) => void = () => undefined): Promise<LoadCheck> {
    const limit = MAX_LOAD_PER_CPU * this.#cpus;
    const deadline = performance.now() + settleMs;
    while ((loadavg()[0] ?? 0) > limit && performance.now() < deadline) {
      log(`load average ${(loadavg()[0] ?? 0).toFixed(2)} is above ${limit}: waiting for it to settle (up to ${Math.round((deadline - performance.now()) / 1000)} s more)`);
      await new Promise((resolve) => setTimeout(resolve, 10_000));
    }
    const before = cpuSnapshot();
    await new Promise((resolve) => setTimeout(resolve, ms));
    const check = this.record('preflight', before);
    const perCpu = check.loadavg_1m / this.#cpus;
    if (perCpu > MAX_LOAD_PER_CPU) this.#reasons.push(`preflight: 1-minute load average ${check.loadavg_1m.toFixed(2)} on ${this.#cpus} CPUs (more than ${MAX_LOAD_PER_CPU} per CPU after ${settleMs / 1000} s)`);
    return check;
  }

  /** Records the CPU other processes used since `before`, under `phase`. */
  record(phase: string, before: CpuSnapshot): LoadCheck {
    const other = otherCpu(before, cpuSnapshot());
    const check: LoadCheck = { phase, other_cpu_cores: other.cores, window_s: other.seconds, top: other.top, loadavg_1m: Math.round((loadavg()[0] ?? 0) * 100) / 100 };
    this.#checks.push(check);
    if (other.cores > MAX_OTHER_CPU_CORES) {
      this.#reasons.push(`${phase}: other processes used ${other.cores.toFixed(2)} cores over ${other.seconds} s (more than ${MAX_OTHER_CPU_CORES}): ${other.top.join(', ')}`);
    }
    return check;
  }

  get loaded(): boolean {
    return this.#reasons.length > 0;
  }

  report(): LoadReport {
    return {
      cpus: this.#cpus,
      max_other_cpu_cores: MAX_OTHER_CPU_CORES,
      max_load_per_cpu: MAX_LOAD_PER_CPU,
      checks: [...this.#checks],
      reasons: [...this.#reasons],
      loaded: this.loaded,
      allowed: this.#allowed,
    };
  }
}
