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

/** A config checked and compiled once (cached per config object). */
/** The setting a configuration problem is about, so that the command line can name its flag. */
export type MappingSetting = 'annotationPrefix' | 'environment' | 'keyRoot' | 'keyTemplate' | 'valueTemplate' | 'valueFormat' | 'dnsZone' | 'dnsTtlSeconds';

export interface MappingProblem {
  readonly setting: MappingSetting;
  readonly message: string;
}

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

function isPrefixChar(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x7a) || c === 0x2d || c === 0x2e;
}

function prepare(cfg: MappingConfig): PreparedConfig {
  const problems: string[] = [];
  const settingProblems: MappingProblem[] = [];
  const fail = (setting: MappingSetting, message: string): void => {
    problems.push(message);
    settingProblems.push({ setting, message });
  };
  const str = (v: unknown): string => (typeof v === 'string' ? v : '');

  // Annotation prefix: a DNS subdomain followed by '/', as Kubernetes requires.
  const prefix = str(cfg.annotationPrefix);
  const domain = prefix.endsWith('/') ? prefix.slice(0, -1) : '';
  let prefixOk = domain.length > 0 && domain.length <= 253;
  for (let i = 0; prefixOk && i < domain.length; i++) prefixOk = isPrefixChar(domain.charCodeAt(i));
  if (!prefixOk) {
    fail('annotationPrefix',
      `annotation prefix ${quote(prefix)} must be a lower-case DNS subdomain followed by '/', e.g. "etcd-registrar.io/"`,
    );
  }

  // Environment default.
  const environment = str(cfg.environment);
  if (environment !== '') {
    const why = nameProblem(environment, MAX_SHORT_NAME);
    if (why !== undefined) fail('environment', `environment ${quote(environment)} ${why}`);
  }

  // Key root.
  const rawRoot = str(cfg.keyRoot);
  const root = normalizeKeyRoot(rawRoot);
  if (root !== '/') {
    const why = keyProblem(root.slice(0, -1), '/');
    if (why !== undefined) fail('keyRoot', `key root ${quote(rawRoot)} ${why}`);
  }

  // Key template (fixed by the zone in the skydns format).
  const format = cfg.valueFormat;
  const skydns = format === 'skydns';
  let dnsTtlSeconds = DEFAULT_DNS_TTL_SECONDS;
  let keySource = str(cfg.keyTemplate);
  if (skydns) {
    const zone = str(cfg.dnsZone);
    const why = dnsZoneProblem(zone);
    if (why !== undefined) fail('dnsZone', `DNS zone ${quote(zone)} ${why}`);
    keySource = skydnsKeyTemplate(why === undefined ? zone : 'invalid.zone');
    const ttl = cfg.dnsTtlSeconds ?? DEFAULT_DNS_TTL_SECONDS;
    if (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_DNS_TTL_SECONDS) {
      fail('dnsTtlSeconds', `DNS TTL ${quote(String(ttl))} must be whole seconds from 1 to ${String(MAX_DNS_TTL_SECONDS)}`);
    } else dnsTtlSeconds = ttl;
  }
  const key = compileTemplate(keySource);
  for (const p of key.problems) fail('keyTemplate', `key template ${quote(keySource)}: ${p}`);
  if (!key.uses.has('ip') || !key.uses.has('port')) {
    fail('keyTemplate',
      `key template ${quote(keySource)} must contain {ip} and {port}, or the keys of different pods or ports would collide`,
    );
  }
  if (!(key.literals[0] ?? '').startsWith(root)) {
    fail(skydns ? 'keyRoot' : 'keyTemplate',
      `key template ${quote(keySource)} must start with the key root ${quote(root)} as literal text, so that every key lies under it`,
    );
  }
  for (let i = 1; i < key.placeholders.length; i++) {
    if ((key.literals[i] ?? '') === '') {
      fail('keyTemplate',
        `key template ${quote(keySource)}: {${key.placeholders[i - 1] ?? ''}}{${key.placeholders[i] ?? ''}} need a separator between them, or keys could collide`,
      );
    }
  }
  {
    const sample = renderTemplate(key, SAMPLE);
    const why = keyProblem(sample, root);
    if (why !== undefined && sample.startsWith(root)) {
      fail('keyTemplate', `key template ${quote(keySource)} gives keys like ${quote(sample)}, which ${why}`);
    }
  }
  if (hasControlChars(keySource)) fail('keyTemplate', `key template ${quote(keySource)} contains control characters`);

  // Value.
  const json = format === 'json';
  if (format !== 'template' && format !== 'json' && format !== 'skydns') {
    fail('valueFormat', `value format ${quote(str(format))} must be "template", "json" or "skydns"`);
  }
  const valueSource = str(cfg.valueTemplate);
  const value = compileTemplate(valueSource);
  if (!json && !skydns) {
    for (const p of value.problems) fail('valueTemplate', `value template ${quote(valueSource)}: ${p}`);
    if (valueSource === '') fail('valueTemplate', 'value template is empty');
    if (hasControlChars(valueSource)) {
      fail('valueTemplate', `value template ${quote(valueSource)} contains control characters`);
    }
  }

  const uses = new Set<Placeholder>(key.uses);
  if (json || skydns) {
    for (const p of ['service', 'environment', 'ip', 'port'] as const) uses.add(p);
  } else {
    for (const p of value.uses) uses.add(p);
  }

  const reserved: string[] = [];
  for (const raw of Array.isArray(cfg.reservedPrefixes) ? cfg.reservedPrefixes : []) {
    const r = normalizeKeyRoot(str(raw));
    if (r === '/' || root.startsWith(r)) {
      fail('keyRoot', `key root ${quote(root)} lies inside the reserved prefix ${quote(r)}`);
    } else reserved.push(r);
  }

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

  return {
    problems,
    settingProblems,
    root,
    key,
    value,
    json,
    skydns,
    dnsTtlSeconds,
    annotations: {
      register: prefix + 'register',
      service: prefix + 'service',
      port: prefix + 'port',
      environment: prefix + 'environment',
      address: prefix + 'address',
      ipFamilies: prefix + 'ip-families',
    },
    uses,
    environmentSeparator,
    environment,
    reserved,
    needsZone: json || uses.has('zone'),
  };
}
