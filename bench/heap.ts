// Summarises a V8 .heapsnapshot (node --heapsnapshot-signal): self size and count per
// constructor/type, largest first. Profiling aid for the benchmarks (see docs/benchmarks.md):
//
//   node bench/heap.ts FILE.heapsnapshot [--top 40]
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface Snapshot {
  readonly snapshot: { readonly meta: { readonly node_fields: string[]; readonly node_types: [string[], ...unknown[]] } };
  readonly nodes: number[];
  readonly strings: string[];
}

export function summarise(snap: Snapshot): { total: number; rows: Array<{ name: string; count: number; bytes: number }> } {
  const fields = snap.snapshot.meta.node_fields;
  const width = fields.length;
  const typeAt = fields.indexOf('type');
  const nameAt = fields.indexOf('name');
  const sizeAt = fields.indexOf('self_size');
  const types = snap.snapshot.meta.node_types[0];
  const groups = new Map<string, { count: number; bytes: number }>();
  let total = 0;
  for (let i = 0; i < snap.nodes.length; i += width) {
    const type = types[snap.nodes[i + typeAt] ?? 0] ?? '?';
    const size = snap.nodes[i + sizeAt] ?? 0;
    // Objects group by constructor name; strings, code, arrays etc. by their type.
    const name = type === 'object' || type === 'closure' ? `${type}:${snap.strings[snap.nodes[i + nameAt] ?? 0] ?? '?'}` : type;
    const g = groups.get(name) ?? { count: 0, bytes: 0 };
    g.count++;
    g.bytes += size;
    groups.set(name, g);
    total += size;
  }
  return { total, rows: [...groups].map(([name, g]) => ({ name, ...g })).sort((a, b) => b.bytes - a.bytes) };
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '40' } } });
  const file = positionals[0];
  if (file === undefined) throw new Error('usage: node bench/heap.ts FILE.heapsnapshot [--top N]');
  const { total, rows } = summarise(JSON.parse(readFileSync(file, 'utf8')) as Snapshot);
  console.log(`${(total / 1e6).toFixed(1)} MB in the snapshot`);
  for (const r of rows.slice(0, Number(values.top))) {
    console.log(`${(r.bytes / 1e6).toFixed(2).padStart(9)} MB ${String(r.count).padStart(9)}  ${r.name}`);
  }
}
