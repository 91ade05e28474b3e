// What a pod asks for through its annotations (and labels): service, environment, address
// mode, ports and IP families, each read and checked on its own. Problems are collected in the
// caller's list, in this order, so that one message names every mistake.

import type { IpFamily, SlimPod } from '../types.ts';
import { MAX_PORTS, MAX_SHORT_NAME } from './config.ts';
import type { AnnotationNames, PreparedConfig } from './config.ts';
import { nameProblem, quote } from './text.ts';

/** Labels consulted, in order, when the service annotation is absent. */
export const SERVICE_LABELS = ['app.kubernetes.io/name', 'app'] as const;

export type AddressMode = 'pod' | 'host';

/** The pod's request, read from its annotations; '' / [] where the annotation was wrong. */
export interface PodRequest {
  readonly service: string;
  readonly environment: string;
  readonly mode: AddressMode;
  readonly ports: readonly number[];
  /** undefined: not asked, the pod's primary family applies. */
  readonly families: readonly IpFamily[] | undefined;
}

/** A record's own string property (never one inherited, such as '__proto__'). */
export function own(record: Readonly<Record<string, string>>, key: string): string | undefined {
  if (!Object.hasOwn(record, key)) return undefined;
  const v = record[key];
  return typeof v === 'string' ? v : undefined;
}

/** The register annotation opts in when it is "true", ignoring case and surrounding blanks. */
export function isOptIn(value: string | undefined): boolean {
  return value !== undefined && value.length <= 16 && value.trim().toLowerCase() === 'true';
}

export function readPodRequest(pod: SlimPod, p: PreparedConfig, problems: string[]): PodRequest {
  const ann = pod.annotations;
  const names = p.annotations;
  const service = serviceOf(pod, p, problems);
  const environment = environmentOf(ann, p, problems);
  const mode = addressModeOf(ann, names, problems);
  const portAnn = own(ann, names.port);
  let ports: number[] = [];
  if (portAnn === undefined) {
    problems.push(`missing annotation ${names.port} (a port number, a named container port, or a list like "86,9090")`);
  } else {
    ports = parsePorts(portAnn, names.port, pod.namedPorts, problems);
  }
  const famAnn = own(ann, names.ipFamilies);
  const families = famAnn === undefined ? undefined : parseFamilies(famAnn, names.ipFamilies, problems);
  return { service, environment, mode, ports, families };
}

/** Service: the annotation, else the first well-known label that is set. */
function serviceOf(pod: SlimPod, p: PreparedConfig, problems: string[]): string {
  const names = p.annotations;
  const serviceAnn = own(pod.annotations, names.service);
  if (serviceAnn !== undefined) {
    const why = nameProblem(serviceAnn, MAX_SHORT_NAME);
    if (why === undefined) return serviceAnn;
    problems.push(`annotation ${names.service}: service name ${quote(serviceAnn)} ${why}`);
    return '';
  }
  for (const label of SERVICE_LABELS) {
    const v = own(pod.labels, label);
    if (v === undefined || v === '') continue;
    const why = nameProblem(v, MAX_SHORT_NAME);
    if (why === undefined) return v;
    problems.push(`label ${label}: service name ${quote(v)} ${why} (set annotation ${names.service} instead)`);
    return '';
  }
  if (p.uses.has('service')) {
    problems.push(`no service name: set annotation ${names.service} or label ${SERVICE_LABELS[0]}`);
  }
  return '';
}

/** Environment: the annotation, else the controller default. */
function environmentOf(ann: Readonly<Record<string, string>>, p: PreparedConfig, problems: string[]): string {
  const names = p.annotations;
  const envAnn = own(ann, names.environment);
  if (envAnn === undefined) {
    if (p.environment === '' && p.uses.has('environment')) {
      problems.push(`no environment: set annotation ${names.environment} (the controller has no default environment)`);
    }
    return p.environment;
  }
  const why = nameProblem(envAnn, MAX_SHORT_NAME);
  if (why !== undefined) {
    problems.push(`annotation ${names.environment}: environment ${quote(envAnn)} ${why}`);
    return '';
  }
  if (p.environmentSeparator !== '' && envAnn.includes(p.environmentSeparator)) {
    problems.push(
      `annotation ${names.environment}: environment ${quote(envAnn)} must not contain ${quote(p.environmentSeparator)}, ` +
        'which separates service and environment in keys (keys of different services could collide)',
    );
    return '';
  }
  return envAnn;
}

/** Address mode: the pod's own IPs unless the annotation says "host". */
function addressModeOf(ann: Readonly<Record<string, string>>, names: AnnotationNames, problems: string[]): AddressMode {
  const addrAnn = own(ann, names.address);
  if (addrAnn === undefined) return 'pod';
  const m = addrAnn.length <= 16 ? addrAnn.trim().toLowerCase() : addrAnn;
  if (m === 'pod' || m === 'host') return m;
  problems.push(`annotation ${names.address}: ${quote(addrAnn)} must be "pod" or "host"`);
  return 'pod';
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
    const port = parsePort(item, annotation, namedPorts, problems);
    if (port !== undefined && !ports.includes(port)) ports.push(port);
  }
  return ports;
}

/** One port entry: a number from 1 to 65535, or the name of a container port. */
function parsePort(
  item: string,
  annotation: string,
  namedPorts: Readonly<Record<string, number>>,
  problems: string[],
): number | undefined {
  const n = digitsValue(item);
  if (n !== undefined) {
    if (n >= 1 && n <= 65535) return n;
    problems.push(`annotation ${annotation}: port ${quote(item)} is out of range (1-65535)`);
    return undefined;
  }
  // Not a number: a named container port (own properties only: no '__proto__').
  const named = Object.hasOwn(namedPorts, item) ? namedPorts[item] : undefined;
  if (typeof named === 'number' && Number.isInteger(named) && named >= 1 && named <= 65535) return named;
  const known = Object.keys(namedPorts).sort();
  const list = known.length === 0 ? 'the pod has no named ports' : `known: ${quote(known.join(', '))}`;
  problems.push(`annotation ${annotation}: ${quote(item)} is neither a port number nor a named container port (${list})`);
  return undefined;
}

/** The value of an all-digit string, capped just above 65535; undefined when not all digits. */
function digitsValue(item: string): number | undefined {
  let n = 0;
  for (let i = 0; i < item.length; i++) {
    const c = item.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return undefined;
    if (n <= 65535) n = n * 10 + (c - 0x30);
  }
  return n;
}

const FAMILY_ORDER: readonly IpFamily[] = ['ipv4', 'ipv6'];

/** The IP families annotation: ipv4 and/or ipv6, always in that order. */
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
