// Pod -> registrations: the pure, validated mapping of the README's contract (annotations,
// key and value templates). Never throws; anything unexpected becomes an `invalid` mapping.
//
// mapPodUnsafe reads as the steps of the decision; each step appends its problems to one
// list, so that a pod with several mistakes hears of all of them at once.

import type { IpFamily, PodMapping, Registration, SlimPod } from '../types.ts';
import { MAX_LONG_NAME, MAX_SHORT_NAME, keyProblem, prepareConfig } from './config.ts';
import type { MappingConfig, PreparedConfig } from './config.ts';
import { isOptIn, own, readPodRequest } from './pod-annotations.ts';
import type { AddressMode, PodRequest } from './pod-annotations.ts';
import { renderTemplate } from './template.ts';
import type { Placeholder, TemplateValues } from './template.ts';
import { hasControlChars, ipFamilyOf, nameProblem, quote } from './text.ts';

export { isOptIn, SERVICE_LABELS } from './pod-annotations.ts';

/**
 * The zone of a node: undefined while the node is unknown, '' when it has no zone label.
 * Needed only when the config uses zones (JSON value or {zone}).
 */
export type ZoneOf = (node: string) => string | undefined;

const IGNORED: PodMapping = Object.freeze({ kind: 'ignored' });
const NO_REGISTRATIONS: readonly Registration[] = Object.freeze([]);

function invalid(problems: readonly string[]): PodMapping {
  return { kind: 'invalid', problems };
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
  if (!isOptIn(own(pod.annotations, p.annotations.register))) return IGNORED;
  if (p.problems.length > 0) return invalid(p.problems.map((x) => `controller configuration: ${x}`));

  const problems: string[] = [];
  const request = readPodRequest(pod, p, problems);
  checkTemplateNames(pod, p, request, problems);
  if (problems.length > 0) return invalid(problems);

  const addresses = addressesOf(pod, request.mode);
  const byFamily = addressesByFamily(addresses, request.mode, problems);
  if (problems.length > 0) return invalid(problems);
  const primary = byFamily.keys().next().value;
  if (primary === undefined) return { kind: 'valid', registrations: NO_REGISTRATIONS, serving: false };

  // {node} only matters once the pod is scheduled, i.e. has an address.
  checkPodName(p, 'node', 'node name', pod.nodeName, problems);
  const zone = nodeZone(pod, p, zoneOf, problems);
  if (typeof zone !== 'string') return zone;
  const chosen = chooseAddresses(request.families ?? [primary], byFamily, addresses, request.mode, p, problems);
  if (problems.length > 0) return invalid(problems);

  const registrations = renderRegistrations(pod, p, request, zone, chosen, problems);
  if (problems.length > 0) return invalid(problems);
  return { kind: 'valid', registrations, serving: registrations.length > 0 && isServing(pod) };
}

/** Ready, not terminating and not finished: its registrations belong in etcd now. */
function isServing(pod: SlimPod): boolean {
  return pod.ready && !pod.terminating && pod.phase !== 'Succeeded' && pod.phase !== 'Failed';
}

/** Pod-provided names used in templates must be safe too (defence in depth). */
function checkPodName(p: PreparedConfig, ph: Placeholder, what: string, name: string, problems: string[]): void {
  if (!p.uses.has(ph)) return;
  const why = nameProblem(name, MAX_LONG_NAME);
  if (why !== undefined) problems.push(`${what} ${quote(name)} ${why}, so it cannot be used in a key or value`);
}

/** The namespace and pod name the templates use, and (skydns) service and environment as DNS labels. */
function checkTemplateNames(pod: SlimPod, p: PreparedConfig, request: PodRequest, problems: string[]): void {
  checkPodName(p, 'namespace', 'namespace', pod.namespace, problems);
  checkPodName(p, 'pod', 'pod name', pod.name, problems);
  if (!p.skydns) return;
  for (const [what, name] of [['service name', request.service], ['environment', request.environment]] as const) {
    const why = dnsLabelProblem(what, name);
    if (why !== undefined) problems.push(why);
  }
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

/** The addresses a pod registers under, by address mode. */
function addressesOf(pod: SlimPod, mode: AddressMode): readonly string[] {
  if (mode === 'pod') return pod.podIPs;
  if (pod.hostIPs.length > 0) return pod.hostIPs;
  return pod.hostIP !== '' ? [pod.hostIP] : [];
}

/**
 * The first address of each family, the primary (first listed) family first; empty while
 * the pod has no address yet.
 */
function addressesByFamily(addresses: readonly string[], mode: AddressMode, problems: string[]): Map<IpFamily, string> {
  const byFamily = new Map<IpFamily, string>();
  for (const ip of addresses) {
    const f = ipFamilyOf(ip);
    if (f === 0) {
      problems.push(`${mode} IP ${quote(ip)} is not a valid IP address`);
      continue;
    }
    const fam: IpFamily = f === 4 ? 'ipv4' : 'ipv6';
    if (!byFamily.has(fam)) byFamily.set(fam, ip);
  }
  return byFamily;
}

/**
 * The zone of the pod's node ('' when the config uses none), or the mapping to return
 * instead: pending while the node is unknown (held, never deregistered for want of a node
 * cache), invalid when the zone cannot fill {zone}. In a key or value template the zone must
 * be a safe name ('' = no label is refused there); in JSON it is escaped and '' means no label.
 */
function nodeZone(pod: SlimPod, p: PreparedConfig, zoneOf: ZoneOf | undefined, problems: string[]): string | PodMapping {
  if (!p.needsZone) return '';
  if (problems.length > 0) return invalid(problems);
  const zone = zoneOf?.(pod.nodeName);
  if (zone === undefined) return { kind: 'pending', reason: `zone of node ${quote(pod.nodeName)} not known yet` };
  if (!p.uses.has('zone')) return zone;
  const why = nameProblem(zone, MAX_SHORT_NAME);
  if (why === undefined) return zone;
  problems.push(
    zone === ''
      ? `node ${quote(pod.nodeName)} has no zone label (topology.kubernetes.io/zone), so {zone} cannot be filled`
      : `zone ${quote(zone)} of node ${quote(pod.nodeName)} ${why}, so it cannot be used in a key or value`,
  );
  return invalid(problems);
}

/** The address of each wanted family; a family the pod lacks is a problem. */
function chooseAddresses(
  families: readonly IpFamily[],
  byFamily: ReadonlyMap<IpFamily, string>,
  addresses: readonly string[],
  mode: AddressMode,
  p: PreparedConfig,
  problems: string[],
): [IpFamily, string][] {
  const chosen: [IpFamily, string][] = [];
  for (const fam of families) {
    const ip = byFamily.get(fam);
    if (ip !== undefined) chosen.push([fam, ip]);
    else {
      problems.push(
        `annotation ${p.annotations.ipFamilies} asks for ${fam} but the pod has no ${fam === 'ipv4' ? 'IPv4' : 'IPv6'} ` +
          `${mode} address (${mode} IPs: ${quote(addresses.join(', '))})`,
      );
    }
  }
  return chosen;
}

/** One registration per port x chosen address, skipping duplicate keys; unsafe keys or values are problems. */
function renderRegistrations(
  pod: SlimPod,
  p: PreparedConfig,
  request: PodRequest,
  zone: string,
  chosen: readonly [IpFamily, string][],
  problems: string[],
): Registration[] {
  const { service, environment } = request;
  const registrations: Registration[] = [];
  const seen = new Set<string>();
  for (const port of request.ports) {
    const portText = String(port);
    for (const [fam, ip] of chosen) {
      const values: TemplateValues = {
        service,
        environment,
        ip,
        port: portText,
        namespace: pod.namespace,
        pod: pod.name,
        node: pod.nodeName,
        zone,
      };
      const key = renderKey(p, values);
      const refusal = keyRefusal(p, key);
      if (refusal !== undefined) {
        problems.push(refusal);
        continue;
      }
      const value = renderValue(p, values, fam, port);
      if (hasControlChars(value)) {
        problems.push(`value ${quote(value)} for key ${quote(key)} contains control characters; nothing registered`);
        continue;
      }
      if (seen.has(key)) continue;
      seen.add(key);
      registrations.push({ key, value, service, environment, ip, port });
    }
  }
  return registrations;
}

function renderKey(p: PreparedConfig, values: TemplateValues): string {
  if (!p.skydns) return renderTemplate(p.key, values);
  return renderTemplate(p.key, {
    ...values,
    service: values.service.toLowerCase(),
    environment: values.environment.toLowerCase(),
    ip: dnsInstanceIp(values.ip),
  });
}

/** Why a rendered key must not be written (unsafe, or in the controller's reserved space), or undefined. */
function keyRefusal(p: PreparedConfig, key: string): string | undefined {
  const why = keyProblem(key, p.root);
  if (why !== undefined) return `key ${quote(key)} ${why}; nothing registered`;
  const reserved = p.reserved.find((r) => key.startsWith(r));
  if (reserved !== undefined) {
    return `key ${quote(key)} falls under the controller's reserved prefix ${quote(reserved)}; nothing registered`;
  }
  return undefined;
}

function renderValue(p: PreparedConfig, values: TemplateValues, family: IpFamily, port: number): string {
  const host = values.ip;
  if (p.skydns) {
    // CoreDNS's msg.Service fields; "ttl" explicit because the plugin would otherwise
    // take the key's etcd lease *id* (truncated to 32 bits) as the TTL.
    return JSON.stringify({ host, port, ttl: p.dnsTtlSeconds });
  }
  if (p.json) {
    const { service, environment, pod, namespace, node, zone } = values;
    return JSON.stringify({ host, port, service, environment, pod, namespace, node, zone });
  }
  return renderTemplate(p.value, { ...values, ip: valueIp(host, family) });
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
