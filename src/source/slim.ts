// Pure conversion of a whole Pod (from a list, deserialised by client-node, or a raw watch
// event, plain JSON) into the slim record the controller keeps. Nothing else of the pod is
// retained, so the cache costs a few hundred bytes per pod instead of tens of kilobytes.
import type { V1Pod } from '@kubernetes/client-node';
import type { SlimPod } from '../types.ts';

/**
 * Timestamps arrive as `Date` from the typed list API and as RFC 3339 strings from raw watch
 * events; normalise both to the same ISO form so that a relist does not look like a change.
 */
const WHOLE_SECONDS = /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\dZ$/;

export function normaliseTimestamp(value: unknown): string {
  if (value instanceof Date) {
    return Number.isNaN(value.getTime()) ? '' : value.toISOString();
  }
  if (typeof value === 'string' && value !== '') {
    // The API server's own form (RFC 3339 in whole seconds, as JSON and the protobuf decoder give
    // it): the same instant with milliseconds, without a Date parse per pod event.
    if (WHOLE_SECONDS.test(value)) return `${value.slice(0, -1)}.000Z`;
    const parsed = new Date(value);
    return Number.isNaN(parsed.getTime()) ? value : parsed.toISOString();
  }
  return '';
}

/**
 * A map of strings (labels, annotations). The decoded object itself when every value is a
 * string (always, from the API server): it belongs to this pod alone, and a copy per event
 * was a tenth of the intake's allocations. Otherwise a copy without the other values.
 */
function stringMap(value: unknown): Readonly<Record<string, string>> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return {};
  const record = value as Record<string, unknown>;
  let allStrings = true;
  for (const k in record) {
    if (!Object.hasOwn(record, k) || typeof record[k] !== 'string') {
      allStrings = false;
      break;
    }
  }
  if (allStrings && Object.getPrototypeOf(record) === Object.prototype) return record as Record<string, string>;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(record)) {
    if (typeof v !== 'string') continue;
    // An own '__proto__' key (JSON.parse makes one) stays a property, never the prototype.
    if (k === '__proto__') Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
    else out[k] = v;
  }
  return out;
}

function ipList(list: unknown, fallback: unknown): readonly string[] {
  const out: string[] = [];
  if (Array.isArray(list)) {
    for (const entry of list as unknown[]) {
      const ip = (entry as { ip?: unknown } | null)?.ip;
      if (typeof ip === 'string' && ip !== '' && !out.includes(ip)) out.push(ip);
    }
  }
  if (out.length === 0 && typeof fallback === 'string' && fallback !== '') out.push(fallback);
  return out;
}

function namedPortsOf(pod: V1Pod): Readonly<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const container of pod.spec?.containers ?? []) {
    for (const port of container.ports ?? []) {
      const name = port.name;
      if (typeof name !== 'string' || name === '') continue;
      if (typeof port.containerPort !== 'number') continue;
      if (!Object.hasOwn(out, name)) out[name] = port.containerPort;
    }
  }
  return out;
}

/** The slim record of a pod; undefined when the pod lacks a uid, name or namespace. */
export function toSlimPod(pod: V1Pod): SlimPod | undefined {
  const meta = pod.metadata;
  const uid = meta?.uid;
  const name = meta?.name;
  const namespace = meta?.namespace;
  if (!uid || !name || !namespace) return undefined;
  const status = pod.status;
  const ready = (status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');
  const podIPs = ipList(status?.podIPs, status?.podIP);
  const hostIPs = ipList(status?.hostIPs, status?.hostIP);
  return {
    uid,
    namespace,
    name,
    resourceVersion: meta.resourceVersion ?? '',
    creationTimestamp: normaliseTimestamp(meta.creationTimestamp),
    annotations: stringMap(meta.annotations),
    labels: stringMap(meta.labels),
    nodeName: pod.spec?.nodeName ?? '',
    hostIP: status?.hostIP || hostIPs[0] || '',
    podIPs,
    hostIPs,
    phase: status?.phase ?? '',
    ready,
    terminating: meta.deletionTimestamp !== undefined && meta.deletionTimestamp !== null,
    namedPorts: namedPortsOf(pod),
  };
}

/** True when two slim records differ in anything but resourceVersion (which changes on every
 * status heartbeat and is kept for logs only). */
export function slimChanged(a: SlimPod, b: SlimPod): boolean {
  if (
    a.uid !== b.uid ||
    a.namespace !== b.namespace ||
    a.name !== b.name ||
    a.creationTimestamp !== b.creationTimestamp ||
    a.nodeName !== b.nodeName ||
    a.hostIP !== b.hostIP ||
    a.phase !== b.phase ||
    a.ready !== b.ready ||
    a.terminating !== b.terminating
  ) {
    return true;
  }
  return (
    !sameList(a.podIPs, b.podIPs) ||
    !sameList(a.hostIPs, b.hostIPs) ||
    !sameRecord(a.annotations, b.annotations) ||
    !sameRecord(a.labels, b.labels) ||
    !sameRecord(a.namedPorts, b.namedPorts)
  );
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function sameRecord<T>(a: Readonly<Record<string, T>>, b: Readonly<Record<string, T>>): boolean {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => Object.hasOwn(b, k) && a[k] === b[k]);
}
