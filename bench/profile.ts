// Summarises a V8 .cpuprofile (node --cpu-prof) by self time per function and by inclusive time
// (each function with everything it called), optionally only the
// samples inside a wall-clock window, or a sampled .heapprofile (bench/alloc-profile.ts) by the
// bytes allocated in each function and beneath it. Profiling aid for the benchmarks (see
// docs/benchmarks.md):
//
//   node bench/profile.ts FILE.cpuprofile [--top 30] [--end-epoch MS --from MS --to MS]
//   node bench/profile.ts FILE.heapprofile [--top 30]
//
// A profile's timestamps are monotonic microseconds, not wall-clock time; --end-epoch (the epoch
// ms at which the process exited, e.g. the controller's "stopped" log line) anchors them.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
}

interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  readonly children?: readonly number[];
}

export interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly endTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

export interface SelfTime {
  readonly name: string;
  readonly ms: number;
  readonly share: number;
}

function frameName(frame: CallFrame): string {
  const file = frame.url.replace(/^.*\/node_modules\//, '~/').replace(/^file:\/\/.*\/(dist|src|bench)\//, '$1/');
  return `${frame.functionName || '(anonymous)'} ${file}:${frame.lineNumber + 1}`;
}

type Window = { from?: number; to?: number };

/**
 * Sums each sample's weight (the time until the next sample) under every name `namesOf` gives its
 * node, over the samples whose time (µs, profile clock) is in [from, to].
 */
function windowTotals(profile: CpuProfile, window: Window, namesOf: (id: number) => Iterable<string>): { total: number; rows: SelfTime[] } {
  const totals = new Map<string, number>();
  let t = profile.startTime;
  let total = 0;
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0;
    t += delta;
    if ((window.from !== undefined && t < window.from) || (window.to !== undefined && t > window.to)) return;
    const weight = (profile.timeDeltas[i + 1] ?? delta) / 1000;
    total += weight;
    for (const name of namesOf(id)) totals.set(name, (totals.get(name) ?? 0) + weight);
  });
  const rows = [...totals].map(([name, ms]) => ({ name, ms, share: total > 0 ? ms / total : 0 })).sort((a, b) => b.ms - a.ms);
  return { total, rows };
}

/**
 * Self time per function (ms) over the samples in the window; also the total per "package"
 * (node_modules directory, our dist, or node internals) when byPackage.
 */
export function selfTimes(profile: CpuProfile, window: Window = {}, byPackage = false): { total: number; rows: SelfTime[] } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  return windowTotals(profile, window, (id) => {
    const node = byId.get(id);
    if (node === undefined) return [];
    return [byPackage ? packageOf(node.callFrame) : frameName(node.callFrame)];
  });
}

/**
 * Time per function and everything it called (ms, inclusive) over the samples in the window: the
 * stage view of a flat profile. A function on a sample's stack twice (recursion) counts once.
 */
export function inclusiveTimes(profile: CpuProfile, window: Window = {}): { total: number; rows: SelfTime[] } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parentOf = new Map<number, number>();
  for (const n of profile.nodes) for (const child of n.children ?? []) parentOf.set(child, n.id);
  return windowTotals(profile, window, (id) => {
    const stack = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parentOf.get(at)) {
      const node = byId.get(at);
      if (node === undefined) break;
      stack.add(frameName(node.callFrame));
    }
    return stack;
  });
}

/** A sampled allocation profile (HeapProfiler.stopSampling): a call tree with bytes per node. */
export interface AllocationNode {
  readonly callFrame: CallFrame;
  readonly selfSize: number;
  readonly children: readonly AllocationNode[];
}

export interface Allocated {
  readonly name: string;
  readonly bytes: number;
  readonly share: number;
}

/**
 * Bytes allocated per function: `self` in the function itself (by package when byPackage), and
 * `beneath` in it and everything it called (a recursive function counted once per stack).
 */
export function allocations(head: AllocationNode, byPackage = false): { total: number; self: Allocated[]; beneath: Allocated[] } {
  const self = new Map<string, number>();
  const beneath = new Map<string, number>();
  let total = 0;
  const visit = (node: AllocationNode, stack: ReadonlySet<string>): void => {
    const name = byPackage ? packageOf(node.callFrame) : frameName(node.callFrame);
    const here = stack.has(name) ? stack : new Set([...stack, name]);
    total += node.selfSize;
    self.set(name, (self.get(name) ?? 0) + node.selfSize);
    for (const caller of here) beneath.set(caller, (beneath.get(caller) ?? 0) + node.selfSize);
    for (const child of node.children) visit(child, here);
  };
  visit(head, new Set());
  const rows = (totals: Map<string, number>): Allocated[] =>
    [...totals].map(([name, bytes]) => ({ name, bytes, share: total > 0 ? bytes / total : 0 })).sort((a, b) => b.bytes - a.bytes);
  return { total, self: rows(self), beneath: rows(beneath) };
}

function packageOf(frame: CallFrame): string {
  if (frame.url === '') return frame.functionName.startsWith('(') ? frame.functionName : '(native/builtin)';
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(frame.url);
  if (nm !== null) return nm[1] ?? frame.url;
  if (frame.url.startsWith('node:')) return 'node:internal';
  return 'etcd-registrar';
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      top: { type: 'string', default: '30' },
      'end-epoch': { type: 'string' },
      from: { type: 'string' },
      to: { type: 'string' },
    },
  });
  const file = positionals[0];
  if (file === undefined) throw new Error('usage: node bench/profile.ts FILE.cpuprofile|FILE.heapprofile [--top N] [--end-epoch MS --from MS --to MS]');
  const top = Number(values.top);
  if (file.endsWith('.heapprofile')) {
    const { head } = JSON.parse(readFileSync(file, 'utf8')) as { head: AllocationNode };
    const mb = (bytes: number): string => (bytes / 1048576).toFixed(2).padStart(8);
    const byPackage = allocations(head, true);
    const byFunction = allocations(head);
    for (const [title, rows] of [['by package', byPackage.self], ['by function', byFunction.self], ['beneath each function', byFunction.beneath]] as const) {
      console.log(`\n${title}: ${mb(byFunction.total)} MB sampled`);
      for (const row of rows.slice(0, top)) console.log(`${mb(row.bytes)} MB ${(row.share * 100).toFixed(1).padStart(5)} %  ${row.name}`);
    }
    process.exit(0);
  }
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  // epoch ms -> profile µs, anchored at the end of the profile.
  const endEpoch = values['end-epoch'] === undefined ? undefined : Number(values['end-epoch']);
  const toProfile = (epochMs: number): number => profile.endTime - ((endEpoch ?? 0) - epochMs) * 1000;
  const window = endEpoch === undefined ? {} : {
    ...(values.from === undefined ? {} : { from: toProfile(Number(values.from)) }),
    ...(values.to === undefined ? {} : { to: toProfile(Number(values.to)) }),
  };
  for (const byPackage of [true, false]) {
    const { total, rows } = selfTimes(profile, window, byPackage);
    console.log(`\n${byPackage ? 'by package' : 'by function'}: ${total.toFixed(0)} ms sampled`);
    for (const row of rows.slice(0, top)) console.log(`${row.ms.toFixed(1).padStart(9)} ms ${(row.share * 100).toFixed(1).padStart(5)} %  ${row.name}`);
  }
  const { total, rows } = inclusiveTimes(profile, window);
  console.log(`\nby function and what it called (inclusive): ${total.toFixed(0)} ms sampled`);
  for (const row of rows.slice(0, top)) console.log(`${row.ms.toFixed(1).padStart(9)} ms ${(row.share * 100).toFixed(1).padStart(5)} %  ${row.name}`);
}
