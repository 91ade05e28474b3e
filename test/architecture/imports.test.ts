// The layering of the house, checked over the import graph of src/ (every non-test .ts file):
// no import cycle; only src/registry talks to etcd; the pure core (mapping, planning, the
// ownership rule) imports no package at all, I/O or otherwise, and no file outside the core.
// Type-only imports count too: a cycle through types still ties two modules together.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { findCycle, importsOf, readImportGraph, sourceFiles, type ImportEdge, type ImportGraph } from './import-graph.ts';

const root = resolve(import.meta.dirname, '../..');

/** The etcd client and its transport: the registry is the one door to etcd. */
const ETCD_PACKAGES = ['etcd3', '@grpc/grpc-js'];

/** The pure core: decisions without I/O, testable with plain values. */
const isCore = (file: string): boolean => file.startsWith('src/mapping/') || file.startsWith('src/plan/') || file === 'src/ownership.ts';
/** Files the core may import besides its own: the shared vocabulary, pure data only. */
const CORE_MAY_IMPORT = new Set(['src/types.ts']);
/**
 * Packages the core may import. None today: not even node: built-ins. A pure library can be
 * added here deliberately; I/O modules (node:fs, node:net, node:http, etcd3,
 * @kubernetes/client-node, undici) never.
 */
const CORE_PACKAGES = new Set<string>();

const isPackage = (edge: ImportEdge, names: readonly string[]): boolean =>
  edge.target === undefined && names.some((name) => edge.specifier === name || edge.specifier.startsWith(`${name}/`));

/** "file imports 'x'" for each import of an etcd package outside src/registry/. */
export function etcdOutsideRegistry(graph: ImportGraph): string[] {
  const found: string[] = [];
  for (const [file, edges] of graph) {
    if (file.startsWith('src/registry/')) continue;
    for (const edge of edges) if (isPackage(edge, ETCD_PACKAGES)) found.push(`${file} imports '${edge.specifier}' (only src/registry/ may talk to etcd)`);
  }
  return found;
}

/** "file imports 'x'" for each import of the core that leaves it. */
export function coreLeaks(graph: ImportGraph): string[] {
  const found: string[] = [];
  for (const [file, edges] of graph) {
    if (!isCore(file)) continue;
    for (const edge of edges) {
      if (edge.target === undefined) {
        if (!CORE_PACKAGES.has(edge.specifier)) found.push(`${file} imports the package '${edge.specifier}' (the pure core imports no package)`);
      } else if (!isCore(edge.target) && !CORE_MAY_IMPORT.has(edge.target)) {
        found.push(`${file} imports '${edge.specifier}' = ${edge.target}, outside the pure core`);
      }
    }
  }
  // What the core may import must itself stay pure, or the core would reach I/O through it.
  for (const file of CORE_MAY_IMPORT) {
    for (const edge of graph.get(file) ?? []) found.push(`${file}, imported by the pure core, imports '${edge.specifier}' (it must import nothing)`);
  }
  return found;
}

const pkg = (specifier: string): ImportEdge => ({ specifier, typeOnly: false });
const file = (target: string): ImportEdge => ({ specifier: `./${target}`, target, typeOnly: false });

describe('import graph of src/', () => {
  const graph = readImportGraph(root, sourceFiles(join(root, 'src')));

  it('is read: the known files and imports are there', () => {
    // A reader that silently found nothing would pass every rule below.
    assert.ok(graph.size > 30, `${graph.size} source files`);
    const planImports = graph.get('src/plan/plan.ts')?.map((e) => e.target);
    assert.ok(planImports?.includes('src/ownership.ts'), `src/plan/plan.ts imports ${JSON.stringify(planImports)}`);
    assert.ok(graph.get('src/registry/client.ts')?.some((e) => e.specifier === 'etcd3'));
  });

  it('has no import cycle', () => {
    const cycle = findCycle(graph);
    assert.equal(cycle, undefined, `import cycle: ${cycle?.join(' → ')}`);
  });

  it('lets only src/registry/ import etcd3 or @grpc/grpc-js', () => {
    assert.deepEqual(etcdOutsideRegistry(graph), []);
  });

  it('keeps the pure core (src/mapping/, src/plan/, src/ownership.ts) free of packages and of other layers', () => {
    assert.deepEqual(coreLeaks(graph), []);
  });
});

describe('findCycle', () => {
  it('finds a cycle and names its files in order, closing on the first', () => {
    const graph = new Map([
      ['a.ts', [file('b.ts')]],
      ['b.ts', [file('c.ts'), pkg('node:fs')]],
      ['c.ts', [file('d.ts'), file('a.ts')]],
      ['d.ts', []],
    ]);
    assert.deepEqual(findCycle(graph), ['a.ts', 'b.ts', 'c.ts', 'a.ts']);
  });

  it('finds a cycle that does not contain the first file visited', () => {
    const graph = new Map([
      ['a.ts', [file('b.ts')]],
      ['b.ts', [file('c.ts')]],
      ['c.ts', [file('b.ts')]],
    ]);
    assert.deepEqual(findCycle(graph), ['b.ts', 'c.ts', 'b.ts']);
  });

  it('finds a file importing itself', () => {
    assert.deepEqual(findCycle(new Map([['a.ts', [file('a.ts')]]])), ['a.ts', 'a.ts']);
  });

  it('finds none in a diamond, nor through files outside the graph', () => {
    const graph = new Map([
      ['a.ts', [file('b.ts'), file('c.ts')]],
      ['b.ts', [file('d.ts'), file('outside.ts')]],
      ['c.ts', [file('d.ts')]],
      ['d.ts', [pkg('etcd3')]],
    ]);
    assert.equal(findCycle(graph), undefined);
  });
});

describe('importsOf', () => {
  it('reads static, re-exported, side-effect and literal dynamic imports, and skips comments', () => {
    const text = [
      "import assert from 'node:assert/strict';",
      "import {",
      "  a,",
      "  type B,",
      "} from './a.ts';",
      "import type { C } from './c.ts';",
      "import * as d from './d.ts';",
      "export { e } from './e.ts';",
      "export * from './f.ts';",
      "export type { G } from './g.ts';",
      "import './h.ts';",
      "// import { x } from './commented.ts';",
      " * see import('./doc.ts')",
      "const later = await import('./i.ts');",
      "const quoted = \"import { y } from './quoted.ts'\";",
    ].join('\n');
    assert.deepEqual(importsOf(text), [
      { specifier: 'node:assert/strict', typeOnly: false },
      { specifier: './a.ts', typeOnly: false },
      { specifier: './c.ts', typeOnly: true },
      { specifier: './d.ts', typeOnly: false },
      { specifier: './e.ts', typeOnly: false },
      { specifier: './f.ts', typeOnly: false },
      { specifier: './g.ts', typeOnly: true },
      { specifier: './h.ts', typeOnly: false },
      { specifier: './i.ts', typeOnly: false },
    ]);
  });
});

describe('readImportGraph', () => {
  it('resolves relative imports to files and throws on one that names no file', (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'import-graph-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, 'a.ts'), "import { b } from './b.ts';\nimport { readFileSync } from 'node:fs';\n");
    writeFileSync(join(dir, 'b.ts'), 'export const b = 1;\n');
    const graph = readImportGraph(dir, sourceFiles(dir));
    assert.deepEqual(graph.get('a.ts'), [
      { specifier: './b.ts', target: 'b.ts', typeOnly: false },
      { specifier: 'node:fs', typeOnly: false },
    ]);
    assert.deepEqual(graph.get('b.ts'), []);
    writeFileSync(join(dir, 'c.ts'), "export { gone } from './gone.ts';\n");
    assert.throws(() => readImportGraph(dir, sourceFiles(dir)), { message: "c.ts imports './gone.ts', which is not a file" });
  });
});

describe('layering rules', () => {
  it('name a file outside src/registry/ that imports etcd', () => {
    const graph = new Map([
      ['src/registry/client.ts', [pkg('etcd3'), pkg('@grpc/grpc-js')]],
      ['src/controller/controller.ts', [pkg('etcd3/lib/errors')]],
      ['src/cli.ts', [pkg('@grpc/grpc-js')]],
    ]);
    assert.deepEqual(etcdOutsideRegistry(graph), [
      "src/controller/controller.ts imports 'etcd3/lib/errors' (only src/registry/ may talk to etcd)",
      "src/cli.ts imports '@grpc/grpc-js' (only src/registry/ may talk to etcd)",
    ]);
  });

  it('name a core file that imports a package or another layer, and an impure shared file', () => {
    const graph = new Map([
      ['src/mapping/map-pod.ts', [file('src/mapping/text.ts'), file('src/types.ts'), pkg('node:fs')]],
      ['src/mapping/text.ts', []],
      ['src/plan/plan.ts', [file('src/ownership.ts'), file('src/registry/keys.ts')]],
      ['src/ownership.ts', []],
      ['src/types.ts', [pkg('@kubernetes/client-node')]],
      ['src/registry/keys.ts', [pkg('etcd3')]],
    ]);
    assert.deepEqual(coreLeaks(graph), [
      "src/mapping/map-pod.ts imports the package 'node:fs' (the pure core imports no package)",
      "src/plan/plan.ts imports './src/registry/keys.ts' = src/registry/keys.ts, outside the pure core",
      "src/types.ts, imported by the pure core, imports '@kubernetes/client-node' (it must import nothing)",
    ]);
  });
});
