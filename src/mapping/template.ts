// Key and value templates: '{placeholder}' substitution, precompiled and cached by source.

export const PLACEHOLDERS = [
  'service',
  'environment',
  'ip',
  'port',
  'namespace',
  'pod',
  'node',
  'zone',
] as const;

export type Placeholder = (typeof PLACEHOLDERS)[number];

const PLACEHOLDER_SET: ReadonlySet<string> = new Set(PLACEHOLDERS);

/**
 * A parsed template: literals[0] ph[0] literals[1] ph[1] ... literals[n].
 * `{{` and `}}` stand for literal braces. Problems (unknown placeholder, unbalanced brace)
 * are reported, and the offending text is kept as a literal so rendering never fails.
 */
export interface CompiledTemplate {
  readonly source: string;
  readonly literals: readonly string[];
  readonly placeholders: readonly Placeholder[];
  readonly uses: ReadonlySet<Placeholder>;
  readonly problems: readonly string[];
}

export type TemplateValues = Readonly<Record<Placeholder, string>>;

const cache = new Map<string, CompiledTemplate>();
const CACHE_MAX = 256;

export function compileTemplate(source: string): CompiledTemplate {
  const hit = cache.get(source);
  if (hit !== undefined) return hit;
  const compiled = parse(source);
  // Configs are few; the bound only protects against callers compiling arbitrary strings.
  if (cache.size >= CACHE_MAX) cache.clear();
  cache.set(source, compiled);
  return compiled;
}

function parse(source: string): CompiledTemplate {
  const literals: string[] = [];
  const placeholders: Placeholder[] = [];
  const problems: string[] = [];
  let lit = '';
  let i = 0;
  while (i < source.length) {
    const ch = source[i];
    if (ch === '{') {
      if (source[i + 1] === '{') {
        lit += '{';
        i += 2;
        continue;
      }
      const end = source.indexOf('}', i + 1);
      const name = end === -1 ? '' : source.slice(i + 1, end);
      if (end !== -1 && PLACEHOLDER_SET.has(name)) {
        literals.push(lit);
        placeholders.push(name as Placeholder);
        lit = '';
        i = end + 1;
        continue;
      }
      if (end === -1 || name.includes('{')) {
        problems.push(`unbalanced '{' at position ${String(i)} (write '{{' for a literal brace)`);
        lit += ch;
        i++;
      } else {
        problems.push(
          `unknown placeholder {${name.length > 32 ? name.slice(0, 32) + '…' : name}} ` +
            `(known: ${PLACEHOLDERS.map((p) => `{${p}}`).join(' ')})`,
        );
        lit += source.slice(i, end + 1);
        i = end + 1;
      }
      continue;
    }
    if (ch === '}') {
      if (source[i + 1] === '}') {
        lit += '}';
        i += 2;
        continue;
      }
      problems.push(`unbalanced '}' at position ${String(i)} (write '}}' for a literal brace)`);
    }
    lit += ch;
    i++;
  }
  literals.push(lit);
  return { source, literals, placeholders, uses: new Set(placeholders), problems };
}

export function renderTemplate(t: CompiledTemplate, values: TemplateValues): string {
  let out = t.literals[0] ?? '';
  for (let i = 0; i < t.placeholders.length; i++) {
    const ph = t.placeholders[i];
    if (ph !== undefined) out += values[ph];
    out += t.literals[i + 1] ?? '';
  }
  return out;
}
