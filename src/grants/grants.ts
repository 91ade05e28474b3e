// Service grants (docs/decisions/0009): which namespaces may register which service names.
// Pure: parsing of the Namespace annotation and of the static --grants flag, the grant table
// and the verdict for one claim. No I/O.
import type { Admission } from '../desired/index.ts';
import { MAX_SHORT_NAME } from '../mapping/config.ts';
import { nameProblem, quote } from '../mapping/text.ts';

/**
 * - off: no grants at all (no namespace watch; every claim allowed, nothing logged);
 * - open: every claim allowed, ungranted ones logged, counted and evented (migration);
 * - strict: ungranted claims refused.
 */
export type GrantsMode = 'off' | 'open' | 'strict';
export const GRANTS_MODES: readonly GrantsMode[] = ['off', 'open', 'strict'];

/** The Namespace annotation, after the configured annotation prefix. */
export const GRANTS_ANNOTATION = 'allowed-services';

/** Most entries read from one annotation or one namespace of the static map. */
export const MAX_GRANT_ENTRIES = 256;

export interface ParsedGrantList {
  /** Exact service names, `*` (any service) or `prefix*`. */
  readonly patterns: readonly string[];
  /** One line per ignored entry. */
  readonly problems: readonly string[];
}

/**
 * Parses "search, web ,shop-*": comma-separated, blanks trimmed, empty entries skipped.
 * An entry is a service name (the same rules as pod service names: case-sensitive, since
 * keys are), `*` or a name prefix followed by `*`. Invalid entries are ignored and named in
 * `problems` (the rest of the list still applies: one typo must not revoke a whole team).
 */
export function parseGrantList(text: string): ParsedGrantList {
  const patterns: string[] = [];
  const problems: string[] = [];
  const entries = text.split(',');
  let seen = 0;
  for (const raw of entries) {
    const entry = raw.trim();
    if (entry === '') continue;
    if (++seen > MAX_GRANT_ENTRIES) {
      problems.push(`more than ${String(MAX_GRANT_ENTRIES)} entries; the rest are ignored`);
      break;
    }
    const problem = patternProblem(entry);
    if (problem !== undefined) problems.push(`${quote(entry)} ${problem}; ignored`);
    else if (!patterns.includes(entry)) patterns.push(entry);
  }
  return { patterns, problems };
}

function patternProblem(entry: string): string | undefined {
  if (entry === '*') return undefined;
  if (entry.endsWith('*')) {
    const prefix = entry.slice(0, -1);
    const why = nameProblem(prefix, MAX_SHORT_NAME);
    return why === undefined ? undefined : `is not a service name prefix followed by "*": the prefix ${why}`;
  }
  const why = nameProblem(entry, MAX_SHORT_NAME);
  return why === undefined ? undefined : `is not a service name: it ${why}`;
}

export function serviceMatches(patterns: readonly string[], service: string): boolean {
  for (const pattern of patterns) {
    if (pattern === service || pattern === '*') return true;
    if (pattern.endsWith('*') && service.startsWith(pattern.slice(0, -1))) return true;
  }
  return false;
}

const namespacePattern = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/**
 * Parses the static grants flag: "team-a=search,web;platform=*". Namespaces must be
 * Kubernetes namespace names; a namespace named twice gets the union. Unlike the annotation
 * (written by many hands), the flag is the platform team's configuration: any problem is an
 * error, reported by the caller as a configuration error.
 */
export function parseStaticGrants(text: string): { grants: Map<string, string[]>; problems: string[] } {
  const grants = new Map<string, string[]>();
  const problems: string[] = [];
  for (const raw of text.split(';')) {
    const item = raw.trim();
    if (item === '') continue;
    const eq = item.indexOf('=');
    if (eq === -1) {
      problems.push(`${quote(item)} must be namespace=service[,service...]`);
      continue;
    }
    const namespace = item.slice(0, eq).trim();
    if (!namespacePattern.test(namespace)) {
      problems.push(`${quote(namespace)} is not a namespace name`);
      continue;
    }
    const list = parseGrantList(item.slice(eq + 1));
    for (const problem of list.problems) problems.push(`namespace ${namespace}: ${problem}`);
    if (list.patterns.length === 0 && list.problems.length === 0) {
      problems.push(`namespace ${namespace}: no services listed`);
      continue;
    }
    const existing = grants.get(namespace) ?? [];
    for (const pattern of list.patterns) if (!existing.includes(pattern)) existing.push(pattern);
    grants.set(namespace, existing);
  }
  return { grants, problems };
}

/** The static grants as the flag writes them (sorted), e.g. for logs. */
export function formatStaticGrants(grants: ReadonlyMap<string, readonly string[]>): string {
  return [...grants].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([ns, list]) => `${ns}=${list.join(',')}`).join(';');
}

/** granted: allowed by a grant; not-granted: the namespace is known and grants nothing that matches; unknown: not in the namespace cache. */
export type GrantStatus = 'granted' | 'not-granted' | 'unknown';

interface NamespaceGrants {
  /** The annotation as last seen (undefined = absent), to detect changes. */
  readonly raw: string | undefined;
  readonly patterns: readonly string[];
}

/**
 * Grants per namespace: the static map merged with the namespaces' annotations. A namespace
 * that is not in the cache (not listed yet, or gone) is `unknown`, never `not-granted`:
 * an incomplete cache must not revoke anything.
 */
export class GrantTable {
  readonly #static: ReadonlyMap<string, readonly string[]>;
  readonly #namespaces = new Map<string, NamespaceGrants>();

  constructor(staticGrants: ReadonlyMap<string, readonly string[]> = new Map()) {
    this.#static = staticGrants;
  }

  /** Records a namespace's annotation (undefined = absent). `changed` is false when nothing that matters changed. */
  setNamespace(name: string, annotation: string | undefined): { changed: boolean; problems: readonly string[] } {
    const previous = this.#namespaces.get(name);
    if (previous !== undefined && previous.raw === annotation) return { changed: false, problems: [] };
    const parsed = annotation === undefined ? { patterns: [], problems: [] } : parseGrantList(annotation);
    this.#namespaces.set(name, { raw: annotation, patterns: parsed.patterns });
    return { changed: true, problems: parsed.problems };
  }

  /** Forgets a deleted namespace; true when it was known. */
  removeNamespace(name: string): boolean {
    return this.#namespaces.delete(name);
  }

  known(name: string): boolean {
    return this.#namespaces.has(name);
  }

  status(namespace: string, service: string): GrantStatus {
    const fixed = this.#static.get(namespace);
    if (fixed !== undefined && serviceMatches(fixed, service)) return 'granted';
    const fromAnnotation = this.#namespaces.get(namespace);
    if (fromAnnotation === undefined) return 'unknown';
    return serviceMatches(fromAnnotation.patterns, service) ? 'granted' : 'not-granted';
  }
}

/**
 * What happens to one claim:
 * - allow: register as usual;
 * - allow-ungranted: register, but warn (open mode);
 * - refuse: write nothing, and remove what the pod had registered (strict mode);
 * - hold: keep whatever the pod has now, neither register nor remove (strict, namespace unknown).
 */
export type Verdict = 'allow' | 'allow-ungranted' | 'refuse' | 'hold';

/** What the desired state does with a claim of that verdict: an ungranted claim allowed in open mode registers. */
export function admissionOf(verdict: Verdict): Admission {
  return verdict === 'allow-ungranted' ? 'allow' : verdict;
}

export function verdictFor(mode: GrantsMode, status: GrantStatus): Verdict {
  if (mode === 'off' || status === 'granted') return 'allow';
  if (mode === 'open') return status === 'not-granted' ? 'allow-ungranted' : 'allow';
  return status === 'not-granted' ? 'refuse' : 'hold';
}
