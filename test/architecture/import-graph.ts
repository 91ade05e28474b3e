// The import graph of the sources, read from their text: enough to keep the layering of the house
// (docs/architecture.md) and the absence of import cycles checked by a test instead of by review.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';

/** One import of a file: the specifier as written and, for a relative one, the file it names. */
export interface ImportEdge {
  readonly specifier: string;
  /** The imported file, relative to the root with '/' separators; undefined for a package. */
  readonly target?: string;
  readonly typeOnly: boolean;
}

/** File (relative to the root, '/' separators) → its imports. */
export type ImportGraph = ReadonlyMap<string, readonly ImportEdge[]>;

// Top-level statements start at column 0 in this code base (comments and nested code do not),
// so anchoring there keeps commented-out or quoted imports out without a full parser.
const STATIC_FROM = /^(import|export)\s+(type\s+)?(?:[\w$]+\s*,?\s*)?(?:\{[^}]*\}|\*(?:\s+as\s+[\w$]+)?)?\s*from\s*['"]([^'"\n]+)['"]/gm;
const SIDE_EFFECT = /^import\s*['"]([^'"\n]+)['"]/gm;
const DYNAMIC = /\bimport\(\s*['"]([^'"\n]+)['"]\s*\)/g;
const LINE_COMMENT = /^\s*(\/\/|\*|\/\*).*$/gm;

/** The specifiers a module's text imports, statically, for side effects, or with a literal import(). */
export function importsOf(text: string): { specifier: string; typeOnly: boolean }[] {
  const found: { specifier: string; typeOnly: boolean }[] = [];
  for (const m of text.matchAll(STATIC_FROM)) {
    // `import type {…}` erases at run time; `export type {…} from` too.
    found.push({ specifier: m[3]!, typeOnly: m[2] !== undefined });
  }
  for (const m of text.matchAll(SIDE_EFFECT)) found.push({ specifier: m[1]!, typeOnly: false });
  for (const m of text.replace(LINE_COMMENT, '').matchAll(DYNAMIC)) found.push({ specifier: m[1]!, typeOnly: false });
  return found;
}

/** The non-test .ts files under `dir` (recursively), sorted. */
export function sourceFiles(dir: string): string[] {
  const files: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) files.push(...sourceFiles(path));
    else if (name.endsWith('.ts') && !name.endsWith('.test.ts') && !name.endsWith('.d.ts')) files.push(path);
  }
  return files;
}

const toKey = (root: string, path: string): string => relative(root, path).split(sep).join('/');

/**
 * The graph of `files` (absolute paths), keyed relative to `root`. A relative specifier must
 * name an existing file: an unresolved one throws, so a misread import cannot pass unseen.
 */
export function readImportGraph(root: string, files: readonly string[]): ImportGraph {
  const graph = new Map<string, ImportEdge[]>();
  for (const file of files) {
    const edges: ImportEdge[] = [];
    for (const { specifier, typeOnly } of importsOf(readFileSync(file, 'utf8'))) {
      if (!specifier.startsWith('.')) {
        edges.push({ specifier, typeOnly });
        continue;
      }
      const target = resolve(dirname(file), specifier);
      let isFile = false;
      try {
        isFile = statSync(target).isFile();
      } catch {
        // reported below
      }
      if (!isFile) throw new Error(`${toKey(root, file)} imports '${specifier}', which is not a file`);
      edges.push({ specifier, target: toKey(root, target), typeOnly });
    }
    graph.set(toKey(root, file), edges);
  }
  return graph;
}

/**
 * One import cycle of the graph's files, as the path a → b → … → a (the first file repeated at
 * the end), or undefined when there is none. Edges to files outside the graph are ignored.
 */
export function findCycle(graph: ReadonlyMap<string, readonly { readonly target?: string }[]>): string[] | undefined {
  const done = new Set<string>();
  // Files on the current depth-first path, in order: a back edge to one of them closes a cycle.
  const path: string[] = [];
  const onPath = new Set<string>();

  const visit = (file: string): string[] | undefined => {
    path.push(file);
    onPath.add(file);
    for (const { target } of graph.get(file) ?? []) {
      if (target === undefined || !graph.has(target) || done.has(target)) continue;
      if (onPath.has(target)) return [...path.slice(path.indexOf(target)), target];
      const cycle = visit(target);
      if (cycle !== undefined) return cycle;
    }
    path.pop();
    onPath.delete(file);
    done.add(file);
    return undefined;
  };

  for (const file of [...graph.keys()].sort()) {
    if (done.has(file)) continue;
    const cycle = visit(file);
    if (cycle !== undefined) return cycle;
  }
  return undefined;
}

/** The files reachable from `start` through relative imports (including `start`). */
export function reachableFrom(graph: ImportGraph, start: string): Set<string> {
  const seen = new Set<string>();
  const stack = [start];
  while (stack.length > 0) {
    const file = stack.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    for (const { target } of graph.get(file) ?? []) if (target !== undefined) stack.push(target);
  }
  return seen;
}
