// The API side of Events: the events.k8s.io/v1 Event built for a recorded event, and the POST
// that creates it. The recorder (recorder.ts) decides when to send; this decides what.
import { hostname } from 'node:os';
import type { KubeAccess } from '../source/kube-access.ts';
import { postJson } from '../source/kube-http.ts';
import type { EventType, PodRef } from '../types.ts';

export const REPORTING_CONTROLLER = 'etcd-registrar.io/controller';

/** One event as accepted by the recorder; turned into an API object by toEventBody(). */
export interface RecordedEvent {
  readonly pod: PodRef;
  readonly type: EventType;
  readonly reason: string;
  readonly action: string;
  readonly note: string;
  /** Epoch ms when record() was called. */
  readonly time: number;
}

export type SendFn = (event: RecordedEvent) => Promise<void>;

/** Who reports the events (the Event's reportingController and reportingInstance). */
export interface ReportingIdentity {
  /** reportingInstance: this replica (pod name). Default os.hostname(). */
  readonly reportingInstance?: string;
  readonly reportingController?: string;
}

const MAX_NOTE_BYTES = 1024;
const MAX_FIELD = 128;
const MAX_NAME = 253;

/** Truncates to at most maxBytes of UTF-8 without splitting a character. */
export function truncateUtf8(text: string, maxBytes: number): string {
  if (Buffer.byteLength(text, 'utf8') <= maxBytes) return text;
  const ellipsis = '…';
  const budget = maxBytes - Buffer.byteLength(ellipsis, 'utf8');
  let bytes = 0;
  let out = '';
  for (const ch of text) {
    const n = Buffer.byteLength(ch, 'utf8');
    if (bytes + n > budget) break;
    bytes += n;
    out += ch;
  }
  return out + ellipsis;
}

/** The events.k8s.io/v1 Event as sent: plain JSON. */
export interface EventBody {
  readonly apiVersion: 'events.k8s.io/v1';
  readonly kind: 'Event';
  readonly metadata: { readonly name: string; readonly namespace: string };
  /** RFC 3339 with microseconds (a MicroTime), e.g. 2026-12-03T07:21:30.855000Z. */
  readonly eventTime: string;
  readonly reportingController: string;
  readonly reportingInstance: string;
  readonly action: string;
  readonly reason: string;
  readonly type: EventType;
  readonly note: string;
  readonly regarding: { readonly apiVersion: 'v1'; readonly kind: 'Pod'; readonly namespace: string; readonly name: string; readonly uid: string };
}

/**
 * Epoch ms as a Kubernetes MicroTime: RFC 3339 in UTC with six fractional digits (the API
 * server rejects an eventTime without them). Fractions of a millisecond are kept.
 */
export function microTime(ms: number): string {
  const whole = Math.floor(ms);
  const micros = Math.min(999, Math.floor((ms - whole) * 1000));
  const iso = new Date(whole).toISOString();
  return `${iso.slice(0, -1)}${String(micros).padStart(3, '0')}Z`;
}

let sequence = 0;

/** The events.k8s.io/v1 Event for a recorded event (pure apart from the name's sequence). */
export function toEventBody(
  event: RecordedEvent,
  reportingController: string,
  reportingInstance: string,
): EventBody {
  sequence = (sequence + 1) % 1_000_000;
  // Like client-go: "<object name>.<unix nanos in hex>"; the sequence keeps names unique
  // within one millisecond.
  const suffix = (BigInt(event.time) * 1_000_000n + BigInt(sequence)).toString(16);
  const base = event.pod.name.slice(0, MAX_NAME - suffix.length - 1);
  return {
    apiVersion: 'events.k8s.io/v1',
    kind: 'Event',
    metadata: { name: `${base}.${suffix}`, namespace: event.pod.namespace },
    eventTime: microTime(event.time),
    reportingController: reportingController.slice(0, MAX_FIELD),
    reportingInstance: reportingInstance.slice(0, MAX_FIELD),
    action: event.action.slice(0, MAX_FIELD),
    reason: event.reason.slice(0, MAX_FIELD),
    type: event.type,
    note: truncateUtf8(event.note, MAX_NOTE_BYTES),
    regarding: {
      apiVersion: 'v1',
      kind: 'Pod',
      namespace: event.pod.namespace,
      name: event.pod.name,
      uid: event.pod.uid,
    },
  };
}

/**
 * Sends each event as an Event in its pod's namespace (POST .../namespaces/{ns}/events). A non-2xx
 * answer rejects with a KubeHttpError whose `code` is the HTTP status (the recorder logs it).
 */
export function apiEventSender(kube: KubeAccess, identity: ReportingIdentity): SendFn {
  const controller = identity.reportingController ?? REPORTING_CONTROLLER;
  const instance = identity.reportingInstance || hostname();
  return async (event) => {
    const path = `/apis/events.k8s.io/v1/namespaces/${encodeURIComponent(event.pod.namespace)}/events`;
    await postJson(kube, path, toEventBody(event, controller, instance));
  };
}
