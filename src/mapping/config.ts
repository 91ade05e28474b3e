// Mapping configuration: defaults, normalization, startup validation, and the prepared
// (precompiled, cached) form used on the hot path by mapPod.

import { compileTemplate, renderTemplate } from './template.ts';
import type { CompiledTemplate, Placeholder, TemplateValues } from './template.ts';
import { hasControlChars, nameProblem, quote } from './text.ts';

export interface MappingConfig {
  /** Annotation prefix, with its trailing '/': 'etcd-registrar.io/'. */
  readonly annotationPrefix: string;
  /** Controller default environment; '' means every pod must set the annotation. */
  readonly environment: string;
  /** Every key lives under this root; normalized to start and end with '/'. */
  readonly keyRoot: string;
  /** Absolute key template; must start with the key root and use {ip} and {port}. */
  readonly keyTemplate: string;
  /** Value template, used when valueFormat is 'template'. */
  readonly valueTemplate: string;
  readonly valueFormat: 'template' | 'json' | 'skydns';
  /**
   * skydns format only: the DNS zone CoreDNS's etcd plugin serves ('svc.example.org'). The
   * key layout is then fixed: /skydns/<zone labels reversed>/<environment>/<service>/<instance>.
   */
  readonly dnsZone?: string | undefined;
  /** skydns format only: the record TTL in seconds written into each value ("ttl"). */
  readonly dnsTtlSeconds?: number | undefined;
  /**
   * Key prefixes the controller keeps for itself (owner records, leader election): a pod
   * whose key would fall under one is invalid. Optional; each normalized like the root.
   */
  readonly reservedPrefixes?: readonly string[] | undefined;
}

export const defaultMappingConfig: MappingConfig = Object.freeze({
  annotationPrefix: 'etcd-registrar.io/',
  environment: '',
  keyRoot: '/',
  keyTemplate: '/{service}_{environment}/{ip}-{port}',
  valueTemplate: '{ip}:{port}',
  valueFormat: 'template',
});

/** Longest service / environment name (a DNS label). */
export const MAX_SHORT_NAME = 63;
/** Longest namespace / pod / node name used in a template (a DNS subdomain). */
export const MAX_LONG_NAME = 253;
/** Most ports one pod may list in its port annotation. */
export const MAX_PORTS = 64;

/** '' -> '/', 'registry' -> '/registry/', '/a/b' -> '/a/b/'. No other rewriting. */
export function normalizeKeyRoot(root: string): string {
  let r = root;
  if (!r.startsWith('/')) r = '/' + r;
  if (!r.endsWith('/')) r += '/';
  return r;
}

/**
 * Why a rendered key is unsafe, or undefined when it is safe: it must start with the
 * (normalized) root and contain no control characters, no empty segment ('//' or a
 * trailing '/'), and no '.' or '..' segment.
 */
export function keyProblem(key: string, root: string): string | undefined {
  if (!key.startsWith(root)) return `is not under the key root ${quote(root)}`;
  if (hasControlChars(key)) return 'contains control characters';
  if (key.length <= 1) return 'is empty';
  let start = 1;
  while (start <= key.length) {
    let end = key.indexOf('/', start);
    if (end === -1) end = key.length;
    const len = end - start;
    if (len === 0) return 'has an empty segment';
    if (len <= 2 && key.charCodeAt(start) === 0x2e && (len === 1 || key.charCodeAt(start + 1) === 0x2e)) {
      return `has a '${key.slice(start, end)}' segment`;
    }
    start = end + 1;
  }
  return undefined;
}

export interface AnnotationNames {
  readonly register: string;
  readonly service: string;
  readonly port: string;
  readonly environment: string;
  readonly address: string;
  readonly ipFamilies: string;
}

/** The setting a configuration problem is about, so that the command line can name its flag. */
export type MappingSetting = 'annotationPrefix' | 'environment' | 'keyRoot' | 'keyTemplate' | 'valueTemplate' | 'valueFormat' | 'dnsZone' | 'dnsTtlSeconds';

export interface MappingProblem {
  readonly setting: MappingSetting;
  readonly message: string;
}

/** A config checked and compiled once (cached per config object). */
export interface PreparedConfig {
  readonly problems: readonly string[];
  /** The same problems, each with the setting it is about. */
  readonly settingProblems: readonly MappingProblem[];
  readonly root: string;
  readonly key: CompiledTemplate;
  readonly value: CompiledTemplate;
  readonly json: boolean;
  /** CoreDNS etcd-plugin layout (decision 0014): lower-cased names, dashed IP instance labels. */
  readonly skydns: boolean;
  /** The "ttl" of skydns values (seconds). */
  readonly dnsTtlSeconds: number;
  readonly annotations: AnnotationNames;
  /** Placeholders used by the key template or (template format) the value template. */
  readonly uses: ReadonlySet<Placeholder>;
  /**
   * The literal joining {service} and {environment} in the key template (default '_'):
   * an environment containing it is refused, or 'a_b'+'c' and 'a'+'b_c' would collide.
   */
  readonly environmentSeparator: string;
  readonly environment: string;
  readonly reserved: readonly string[];
  /** The JSON value (field "zone") or a template ({zone}) needs each pod's node zone. */
  readonly needsZone: boolean;
}

/** Default "ttl" of skydns records: short, so resolvers drop a deregistered pod quickly. */
export const DEFAULT_DNS_TTL_SECONDS = 5;
export const MAX_DNS_TTL_SECONDS = 86_400;

/**
 * Why a DNS zone is unusable for the skydns layout, or undefined: 1-253 characters of
 * dot-separated labels, each 1-63 of [a-z0-9-] not starting or ending with '-'. Lower case
 * only, because CoreDNS lower-cases every query name before it builds the etcd path.
 */
export function dnsZoneProblem(zone: string): string | undefined {
  if (zone === '') return 'is empty';
  if (zone.length > 253) return 'is longer than 253 characters';
  for (const label of zone.split('.')) {
    if (label === '') return "has an empty label (no leading, trailing or double '.')";
    if (label.length > 63) return `has a label longer than 63 characters`;
    if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/.test(label)) {
      return `has the label ${quote(label)}: labels are lower-case letters, digits and '-', not starting or ending with '-'`;
    }
  }
  return undefined;
}

/** The etcd path CoreDNS's etcd plugin reads for a zone: '/skydns/org/example/svc'. */
export function skydnsZonePath(zone: string): string {
  return '/skydns/' + zone.split('.').reverse().join('/');
}

/**
 * The fixed key layout of the skydns format, as a template: the instance label is the pod IP
 * (dashed, see map-pod.ts) and port, one key per port so SRV answers carry each port.
 */
export function skydnsKeyTemplate(zone: string): string {
  return `${skydnsZonePath(zone)}/{environment}/{service}/{ip}-{port}`;
}

const prepared = new WeakMap<MappingConfig, PreparedConfig>();

export function prepareConfig(cfg: MappingConfig): PreparedConfig {
  const hit = prepared.get(cfg);
  if (hit !== undefined) return hit;
  const p = prepare(cfg);
  prepared.set(cfg, p);
  return p;
}

/** The mapping needs node zones (JSON value format or {zone} in a template): nodes are watched. */
export function mappingNeedsZones(cfg: MappingConfig): boolean {
  return prepareConfig(cfg).needsZone;
}

/** Problems of a config, for startup errors; [] when the config is usable. */
export function validateMappingConfig(cfg: MappingConfig): string[] {
  return [...prepareConfig(cfg).problems];
}

/** The problems of a config with the setting each is about; [] when the config is usable. */
export function mappingConfigProblems(cfg: MappingConfig): readonly MappingProblem[] {
  return prepareConfig(cfg).settingProblems;
}

const SAMPLE: TemplateValues = {
  service: 'svc',
  environment: 'env',
  ip: '10.0.0.1',
  port: '80',
  namespace: 'ns',
  pod: 'pod',
  node: 'node',
  zone: 'zone-a',
};

/** Records one configuration problem against the setting it is about. */
type Fail = (setting: MappingSetting, message: string) => void;

/** A setting as given, or '' when it is not a string (configs may come from untyped sources). */
function str(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

/**
 * Checks and compiles a config. The problems come in a fixed order (annotation prefix,
 * environment, key root, DNS zone and TTL, key template, value, reserved prefixes), each
 * step below adding its own.
 */
function prepare(cfg: MappingConfig): PreparedConfig {
  const problems: string[] = [];
  const settingProblems: MappingProblem[] = [];
  const fail: Fail = (setting, message) => {
    problems.push(message);
    settingProblems.push({ setting, message });
  };

  const prefix = str(cfg.annotationPrefix);
  checkAnnotationPrefix(prefix, fail);
  const environment = str(cfg.environment);
  checkDefaultEnvironment(environment, fail);
  const rawRoot = str(cfg.keyRoot);
  const root = normalizeKeyRoot(rawRoot);
  checkKeyRoot(rawRoot, root, fail);

  const format = cfg.valueFormat;
  const skydns = format === 'skydns';
  const json = format === 'json';
  const layout = skydns ? skydnsLayout(cfg, fail) : undefined;
  const key = compileTemplate(layout?.keyTemplate ?? str(cfg.keyTemplate));
  checkKeyTemplate(key, root, skydns, fail);
  const value = compileTemplate(str(cfg.valueTemplate));
  checkValue(format, value, fail);
  const reserved = reservedPrefixes(cfg.reservedPrefixes, root, fail);
  const uses = placeholdersUsed(key, json || skydns ? undefined : value);

  return {
    problems,
    settingProblems,
    root,
    key,
    value,
    json,
    skydns,
    dnsTtlSeconds: layout?.dnsTtlSeconds ?? DEFAULT_DNS_TTL_SECONDS,
    annotations: annotationNames(prefix),
    uses,
    environmentSeparator: environmentSeparatorOf(key),
    environment,
    reserved,
    needsZone: json || uses.has('zone'),
  };
}

/** Annotation prefix: a DNS subdomain followed by '/', as Kubernetes requires. */
function checkAnnotationPrefix(prefix: string, fail: Fail): void {
  const domain = prefix.endsWith('/') ? prefix.slice(0, -1) : '';
  let prefixOk = domain.length > 0 && domain.length <= 253;
  for (let i = 0; prefixOk && i < domain.length; i++) prefixOk = isPrefixChar(domain.charCodeAt(i));
  if (!prefixOk) {
    fail('annotationPrefix',
      `annotation prefix ${quote(prefix)} must be a lower-case DNS subdomain followed by '/', e.g. "etcd-registrar.io/"`,
    );
  }
}

function isPrefixChar(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x7a) || c === 0x2d || c === 0x2e;
}

function annotationNames(prefix: string): AnnotationNames {
  return {
    register: prefix + 'register',
    service: prefix + 'service',
    port: prefix + 'port',
    environment: prefix + 'environment',
    address: prefix + 'address',
    ipFamilies: prefix + 'ip-families',
  };
}

/** The default environment may be '' (every pod then names its own). */
function checkDefaultEnvironment(environment: string, fail: Fail): void {
  if (environment === '') return;
  const why = nameProblem(environment, MAX_SHORT_NAME);
  if (why !== undefined) fail('environment', `environment ${quote(environment)} ${why}`);
}

function checkKeyRoot(rawRoot: string, root: string, fail: Fail): void {
  if (root === '/') return;
  const why = keyProblem(root.slice(0, -1), '/');
  if (why !== undefined) fail('keyRoot', `key root ${quote(rawRoot)} ${why}`);
}

/** The skydns format fixes the key template by the zone, and writes the TTL into each value. */
function skydnsLayout(cfg: MappingConfig, fail: Fail): { keyTemplate: string; dnsTtlSeconds: number } {
  const zone = str(cfg.dnsZone);
  const why = dnsZoneProblem(zone);
  if (why !== undefined) fail('dnsZone', `DNS zone ${quote(zone)} ${why}`);
  const keyTemplate = skydnsKeyTemplate(why === undefined ? zone : 'invalid.zone');
  const ttl = cfg.dnsTtlSeconds ?? DEFAULT_DNS_TTL_SECONDS;
  if (Number.isInteger(ttl) && ttl >= 1 && ttl <= MAX_DNS_TTL_SECONDS) return { keyTemplate, dnsTtlSeconds: ttl };
  fail('dnsTtlSeconds', `DNS TTL ${quote(String(ttl))} must be whole seconds from 1 to ${String(MAX_DNS_TTL_SECONDS)}`);
  return { keyTemplate, dnsTtlSeconds: DEFAULT_DNS_TTL_SECONDS };
}

/**
 * A key template must give every pod, port and address its own key under the root: {ip} and
 * {port} present, the root as literal text, a separator between placeholders, safe sample keys.
 */
function checkKeyTemplate(key: CompiledTemplate, root: string, skydns: boolean, fail: Fail): void {
  const source = key.source;
  for (const p of key.problems) fail('keyTemplate', `key template ${quote(source)}: ${p}`);
  if (!key.uses.has('ip') || !key.uses.has('port')) {
    fail('keyTemplate',
      `key template ${quote(source)} must contain {ip} and {port}, or the keys of different pods or ports would collide`,
    );
  }
  if (!(key.literals[0] ?? '').startsWith(root)) {
    // In the skydns format the template is fixed: only the root can be at fault.
    fail(skydns ? 'keyRoot' : 'keyTemplate',
      `key template ${quote(source)} must start with the key root ${quote(root)} as literal text, so that every key lies under it`,
    );
  }
  for (let i = 1; i < key.placeholders.length; i++) {
    if ((key.literals[i] ?? '') === '') {
      fail('keyTemplate',
        `key template ${quote(source)}: {${key.placeholders[i - 1] ?? ''}}{${key.placeholders[i] ?? ''}} need a separator between them, or keys could collide`,
      );
    }
  }
  const sample = renderTemplate(key, SAMPLE);
  const why = keyProblem(sample, root);
  if (why !== undefined && sample.startsWith(root)) {
    fail('keyTemplate', `key template ${quote(source)} gives keys like ${quote(sample)}, which ${why}`);
  }
  if (hasControlChars(source)) fail('keyTemplate', `key template ${quote(source)} contains control characters`);
}

/** The value format, and the value template when that format uses it. */
function checkValue(format: unknown, value: CompiledTemplate, fail: Fail): void {
  if (format !== 'template' && format !== 'json' && format !== 'skydns') {
    fail('valueFormat', `value format ${quote(str(format))} must be "template", "json" or "skydns"`);
  }
  if (format === 'json' || format === 'skydns') return;
  const source = value.source;
  for (const p of value.problems) fail('valueTemplate', `value template ${quote(source)}: ${p}`);
  if (source === '') fail('valueTemplate', 'value template is empty');
  if (hasControlChars(source)) fail('valueTemplate', `value template ${quote(source)} contains control characters`);
}

/** Placeholders a pod must fill: the key template's and the value template's (undefined: a JSON value). */
function placeholdersUsed(key: CompiledTemplate, value: CompiledTemplate | undefined): Set<Placeholder> {
  const uses = new Set<Placeholder>(key.uses);
  const valueUses: Iterable<Placeholder> = value?.uses ?? (['service', 'environment', 'ip', 'port'] as const);
  for (const p of valueUses) uses.add(p);
  return uses;
}

/** The reserved prefixes, normalized; one that holds the key root is a problem (and dropped). */
function reservedPrefixes(raws: unknown, root: string, fail: Fail): string[] {
  const reserved: string[] = [];
  for (const raw of Array.isArray(raws) ? (raws as unknown[]) : []) {
    const r = normalizeKeyRoot(str(raw));
    if (r === '/' || root.startsWith(r)) {
      fail('keyRoot', `key root ${quote(root)} lies inside the reserved prefix ${quote(r)}`);
    } else reserved.push(r);
  }
  return reserved;
}

/** The literal between {service} and {environment} in the key template, when one joins them within a segment. */
function environmentSeparatorOf(key: CompiledTemplate): string {
  let environmentSeparator = '';
  for (let i = 1; i < key.placeholders.length; i++) {
    const a = key.placeholders[i - 1];
    const b = key.placeholders[i];
    const sep = key.literals[i] ?? '';
    if (
      ((a === 'service' && b === 'environment') || (a === 'environment' && b === 'service')) &&
      sep !== '' &&
      !sep.includes('/')
    ) {
      environmentSeparator = sep;
    }
  }
  return environmentSeparator;
}
