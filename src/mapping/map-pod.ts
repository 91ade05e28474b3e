// Pod -> registrations: the pure, validated mapping of the README's contract (annotations,
// key and value templates). Never throws; anything unexpected becomes an `invalid` mapping.

import type { IpFamily, PodMapping, Registration, SlimPod } from '../types.ts';
import { MAX_LONG_NAME, MAX_PORTS, MAX_SHORT_NAME, keyProblem, prepareConfig } from './config.ts';
import type { MappingConfig } from './config.ts';
import { renderTemplate } from './template.ts';
import type { Placeholder } from './template.ts';
import { hasControlChars, ipFamilyOf, nameProblem, quote } from './text.ts';

/**
 * The zone of a node: undefined while the node is unknown, '' when it has no zone label.
 * Needed only when the config uses zones (JSON value or {zone}).
 */
export type ZoneOf = (node: string) => string | undefined;

const IGNORED: PodMapping = Object.freeze({ kind: 'ignored' });
const NO_REGISTRATIONS: readonly Registration[] = Object.freeze([]);

/** Labels consulted, in order, when the service annotation is absent. */
export const SERVICE_LABELS = ['app.kubernetes.io/name', 'app'] as const;

function own(record: Readonly<Record<string, string>>, key: string): string | undefined {
  if (!Object.hasOwn(record, key)) return undefined;
  const v = record[key];
  return typeof v === 'string' ? v : undefined;
}

/** The register annotation opts in when it is "true", ignoring case and surrounding blanks. */
export function isOptIn(value: string | undefined): boolean {
  return value !== undefined && value.length <= 16 && value.trim().toLowerCase() === 'true';
}

function invalid(problems: readonly string[]): PodMapping {
  return { kind: 'invalid', problems };
}

/** Parse the port annotation into distinct ports (in order of first appearance). */
function parsePorts(
  raw: string,
  annotation: string,
  namedPorts: Readonly<Record<string, number>>,
  problems: string[],
): number[] {
  // Count items before splitting, so thousands of items cost one scan.
  let items = 1;
  for (let i = 0; i < raw.length; i++) if (raw.charCodeAt(i) === 0x2c) items++;
  if (items > MAX_PORTS) {
    problems.push(`annotation ${annotation}: ${String(items)} ports listed, at most ${String(MAX_PORTS)} allowed`);
    return [];
  }
  const ports: number[] = [];
  for (const part of raw.split(',')) {
    const item = part.trim();
    if (item === '') {
      problems.push(`annotation ${annotation}: ${quote(raw)} has an empty port entry`);
      continue;
    }
    let digits = true;
    let n = 0;
    for (let i = 0; i < item.length; i++) {
      const c = item.charCodeAt(i);
      if (c < 0x30 || c > 0x39) {
        digits = false;
        break;
      }
      if (n <= 65535) n = n * 10 + (c - 0x30);
    }
    let port: number;
    if (digits) {
      if (n < 1 || n > 65535) {
        problems.push(`annotation ${annotation}: port ${quote(item)} is out of range (1-65535)`);
        continue;
      }
      port = n;
    } else {
      // Not a number: a named container port (own properties only: no '__proto__').
      const named = Object.hasOwn(namedPorts, item) ? namedPorts[item] : undefined;
      if (typeof named !== 'number' || !Number.isInteger(named) || named < 1 || named > 65535) {
        const known = Object.keys(namedPorts).sort();
        const list = known.length === 0 ? 'the pod has no named ports' : `known: ${quote(known.join(', '))}`;
        problems.push(
          `annotation ${annotation}: ${quote(item)} is neither a port number nor a named container port (${list})`,
        );
        continue;
      }
      port = named;
    }
    if (!ports.includes(port)) ports.push(port);
  }
  return ports;
}

const FAMILY_ORDER: readonly IpFamily[] = ['ipv4', 'ipv6'];

function parseFamilies(raw: string, annotation: string, problems: string[]): IpFamily[] | undefined {
  const wanted = new Set<IpFamily>();
  if (raw.length > 64) {
    problems.push(`annotation ${annotation}: ${quote(raw)} must be "ipv4", "ipv6" or "ipv4,ipv6"`);
    return undefined;
  }
  for (const part of raw.split(',')) {
    const f = part.trim().toLowerCase();
    if (f === 'ipv4' || f === 'ipv6') wanted.add(f);
    else {
      problems.push(
        `annotation ${annotation}: ${quote(part.trim())} is not an IP family (use "ipv4", "ipv6" or "ipv4,ipv6")`,
      );
      return undefined;
    }
  }
  return FAMILY_ORDER.filter((f) => wanted.has(f));
}

/** The addresses a pod registers under, by address mode. */
function addressesOf(pod: SlimPod, mode: 'pod' | 'host'): readonly string[] {
  if (mode === 'pod') return pod.podIPs;
  if (pod.hostIPs.length > 0) return pod.hostIPs;
  return pod.hostIP !== '' ? [pod.hostIP] : [];
}

/** Render one IP for a value template: IPv6 in brackets so '{ip}:{port}' stays parseable. */
function valueIp(ip: string, family: IpFamily): string {
  return family === 'ipv6' ? `[${ip}]` : ip;
}

/**
 * The instance label of a skydns key: the IP with '.' and ':' turned into '-' (a dot would
 * split it into DNS labels, and CoreDNS turns the key into the SRV target name), e.g.
 * 10.0.0.7 -> 10-0-0-7, fd00::7 -> fd00--7.
 */
export function dnsInstanceIp(ip: string): string {
  return ip.replaceAll('.', '-').replaceAll(':', '-');
}

/**
 * Service and environment become DNS labels in the skydns layout: lower-cased (CoreDNS
 * lower-cases query names) and without '.', which would split them into two labels.
 */
function dnsLabelProblem(what: string, name: string): string | undefined {
  return name.includes('.')
    ? `${what} ${quote(name)} contains '.', which would split it into two DNS labels (value format skydns)`
    : undefined;
}

/**
 * Map a pod to its registrations.
 * - `ignored`: the register annotation is not "true" (case-insensitive).
 * - `invalid`: some annotation (or the controller config) is wrong; problems name each.
 * - `valid`: registrations for every port x requested IP family (empty while the pod has
 *   no IP); `serving` tells whether they should exist in etcd now.
 * - `pending`: the config needs the pod's node zone and `zoneOf` does not know the node yet.
 */
export function mapPod(pod: SlimPod, cfg: MappingConfig, zoneOf?: ZoneOf): PodMapping {
  try {
    return mapPodUnsafe(pod, cfg, zoneOf);
  } catch (err) {
    // Not expected; a mapping must never take the controller down.
    return invalid([`internal error while mapping the pod: ${quote(String(err))}`]);
  }
}

function mapPodUnsafe(pod: SlimPod, cfg: MappingConfig, zoneOf: ZoneOf | undefined): PodMapping {
  const p = prepareConfig(cfg);
  const ann = pod.annotations;
  const names = p.annotations;
  if (!isOptIn(own(ann, names.register))) return IGNORED;
  if (p.problems.length > 0) return invalid(p.problems.map((x) => `controller configuration: ${x}`));

  const problems: string[] = [];

  // Service: annotation, then the well-known labels.
  let service = '';
  const serviceAnn = own(ann, names.service);
  if (serviceAnn !== undefined) {
    const why = nameProblem(serviceAnn, MAX_SHORT_NAME);
    if (why !== undefined) problems.push(`annotation ${names.service}: service name ${quote(serviceAnn)} ${why}`);
    else service = serviceAnn;
  } else {
    let labelProblem = false;
    for (const label of SERVICE_LABELS) {
      const v = own(pod.labels, label);
      if (v === undefined || v === '') continue;
      const why = nameProblem(v, MAX_SHORT_NAME);
      if (why !== undefined) {
        problems.push(`label ${label}: service name ${quote(v)} ${why} (set annotation ${names.service} instead)`);
        labelProblem = true;
      } else service = v;
      break;
    }
    if (service === '' && !labelProblem && p.uses.has('service')) {
      problems.push(`no service name: set annotation ${names.service} or label ${SERVICE_LABELS[0]}`);
    }
  }

  // Environment: annotation, then the controller default.
  let environment = p.environment;
  const envAnn = own(ann, names.environment);
  if (envAnn !== undefined) {
    const why = nameProblem(envAnn, MAX_SHORT_NAME);
    if (why !== undefined) {
      problems.push(`annotation ${names.environment}: environment ${quote(envAnn)} ${why}`);
      environment = '';
    } else if (p.environmentSeparator !== '' && envAnn.includes(p.environmentSeparator)) {
      problems.push(
        `annotation ${names.environment}: environment ${quote(envAnn)} must not contain ${quote(p.environmentSeparator)}, ` +
          'which separates service and environment in keys (keys of different services could collide)',
      );
      environment = '';
    } else environment = envAnn;
  } else if (environment === '' && p.uses.has('environment')) {
    problems.push(
      `no environment: set annotation ${names.environment} (the controller has no default environment)`,
    );
  }

  // Address mode.
  let mode: 'pod' | 'host' = 'pod';
  const addrAnn = own(ann, names.address);
  if (addrAnn !== undefined) {
    const m = addrAnn.length <= 16 ? addrAnn.trim().toLowerCase() : addrAnn;
    if (m === 'pod' || m === 'host') mode = m;
    else problems.push(`annotation ${names.address}: ${quote(addrAnn)} must be "pod" or "host"`);
  }

  // Ports.
  let ports: number[] = [];
  const portAnn = own(ann, names.port);
  if (portAnn === undefined) {
    problems.push(`missing annotation ${names.port} (a port number, a named container port, or a list like "86,9090")`);
  } else {
    ports = parsePorts(portAnn, names.port, pod.namedPorts, problems);
  }

  // IP families.
  const famAnn = own(ann, names.ipFamilies);
  const requested = famAnn === undefined ? undefined : parseFamilies(famAnn, names.ipFamilies, problems);

  // Pod-provided names used in templates must be safe too (defence in depth).
  const checkPodName = (ph: Placeholder, what: string, v: string): void => {
    if (!p.uses.has(ph)) return;
    const why = nameProblem(v, MAX_LONG_NAME);
    if (why !== undefined) problems.push(`${what} ${quote(v)} ${why}, so it cannot be used in a key or value`);
  };
  checkPodName('namespace', 'namespace', pod.namespace);
  checkPodName('pod', 'pod name', pod.name);

  if (p.skydns) {
    for (const [what, name] of [['service name', service], ['environment', environment]] as const) {
      const why = dnsLabelProblem(what, name);
      if (why !== undefined) problems.push(why);
    }
  }

  if (problems.length > 0) return invalid(problems);

  // Addresses: none yet -> valid, nothing to register.
  const addresses = addressesOf(pod, mode);
  const byFamily = new Map<IpFamily, string>();
  let primary: IpFamily | undefined;
  for (const ip of addresses) {
    const f = ipFamilyOf(ip);
    if (f === 0) {
      problems.push(`${mode} IP ${quote(ip)} is not a valid IP address`);
      continue;
    }
    const fam: IpFamily = f === 4 ? 'ipv4' : 'ipv6';
    primary ??= fam;
    if (!byFamily.has(fam)) byFamily.set(fam, ip);
  }
  if (problems.length > 0) return invalid(problems);
  if (primary === undefined) return { kind: 'valid', registrations: NO_REGISTRATIONS, serving: false };

  // {node} only matters once the pod is scheduled, i.e. has an address.
  checkPodName('node', 'node name', pod.nodeName);

  // Zone: the node's label, once the node is known. Unknown node -> pending (held, never
  // deregistered for want of a node cache). In a key or value template it must be a safe
  // name ('' = no label is refused there); in JSON it is escaped and '' means no label.
  let zone = '';
  if (p.needsZone) {
    if (problems.length > 0) return invalid(problems);
    const known = zoneOf?.(pod.nodeName);
    if (known === undefined) return { kind: 'pending', reason: `zone of node ${quote(pod.nodeName)} not known yet` };
    zone = known;
    if (p.uses.has('zone')) {
      const why = nameProblem(zone, MAX_SHORT_NAME);
      if (why !== undefined) {
        problems.push(
          zone === ''
            ? `node ${quote(pod.nodeName)} has no zone label (topology.kubernetes.io/zone), so {zone} cannot be filled`
            : `zone ${quote(zone)} of node ${quote(pod.nodeName)} ${why}, so it cannot be used in a key or value`,
        );
        return invalid(problems);
      }
    }
  }

  const families = requested ?? [primary];
  const chosen: [IpFamily, string][] = [];
  for (const fam of families) {
    const ip = byFamily.get(fam);
    if (ip === undefined) {
      problems.push(
        `annotation ${names.ipFamilies} asks for ${fam} but the pod has no ${fam === 'ipv4' ? 'IPv4' : 'IPv6'} ` +
          `${mode} address (${mode} IPs: ${quote(addresses.join(', '))})`,
      );
    } else chosen.push([fam, ip]);
  }
  if (problems.length > 0) return invalid(problems);

  const registrations: Registration[] = [];
  const seen = new Set<string>();
  for (const port of ports) {
    const portText = String(port);
    for (const [fam, ip] of chosen) {
      const values = {
        service,
        environment,
        ip,
        port: portText,
        namespace: pod.namespace,
        pod: pod.name,
        node: pod.nodeName,
        zone,
      };
      const key = renderTemplate(
        p.key,
        p.skydns
          ? { ...values, service: service.toLowerCase(), environment: environment.toLowerCase(), ip: dnsInstanceIp(ip) }
          : values,
      );
      const keyWhy = keyProblem(key, p.root);
      if (keyWhy !== undefined) {
        problems.push(`key ${quote(key)} ${keyWhy}; nothing registered`);
        continue;
      }
      const reserved = p.reserved.find((r) => key.startsWith(r));
      if (reserved !== undefined) {
        problems.push(`key ${quote(key)} falls under the controller's reserved prefix ${quote(reserved)}; nothing registered`);
        continue;
      }
      const value = p.skydns
        ? // CoreDNS's msg.Service fields; "ttl" explicit because the plugin would otherwise
          // take the key's etcd lease *id* (truncated to 32 bits) as the TTL.
          JSON.stringify({ host: ip, port, ttl: p.dnsTtlSeconds })
        : p.json
        ? JSON.stringify({
            host: ip,
            port,
            service,
            environment,
            pod: pod.name,
            namespace: pod.namespace,
            node: pod.nodeName,
            zone,
          })
        : renderTemplate(p.value, { ...values, ip: valueIp(ip, fam) });
      if (hasControlChars(value)) {
        problems.push(`value ${quote(value)} for key ${quote(key)} contains control characters; nothing registered`);
        continue;
      }
      if (seen.has(key)) continue;
      seen.add(key);
      registrations.push({ key, value, service, environment, ip, port });
    }
  }
  if (problems.length > 0) return invalid(problems);

  const serving =
    pod.ready &&
    !pod.terminating &&
    pod.phase !== 'Succeeded' &&
    pod.phase !== 'Failed' &&
    registrations.length > 0;
  return { kind: 'valid', registrations, serving };
}
