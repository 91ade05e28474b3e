// Kubernetes Events on pods (events.k8s.io/v1), fire and forget (docs/decisions/0021).
//
// record() never throws and never makes the caller wait. Between it and the API server:
//   dedupe (same pod uid + type + reason + note within a window, bounded LRU)
//   -> per-pod token bucket (one flapping pod cannot use the whole budget)
//   -> bounded FIFO queue (full = drop, counted)
//   -> global token bucket + concurrency limit -> send.
// So 10,000 invalid pods cost at most `burst` events at once and `ratePerSec` after that.
import { hostname } from 'node:os';
import { EventsV1Api, V1MicroTime } from '@kubernetes/client-node';
import type { EventsV1Event, KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { EventType, PodRef } from '../types.ts';

export const REPORTING_CONTROLLER = 'etcd-registrar.io/controller';

export type { EventType, PodRef };

/** Known reasons; any other CamelCase reason is accepted too. */
export type EventReason =
  | 'Registered'
  | 'Deregistered'
  | 'InvalidRegistration'
  | 'RegistrationRefused'
  | 'DeleteRefused'
  | (string & {});

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

export interface RecorderTimers {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface EventRecorderOptions {
  /** Used to build the default send function (EventsV1Api.createNamespacedEvent). */
  readonly kubeConfig?: KubeConfig;
  /** Replaces the API call (tests). */
  readonly send?: SendFn;
  readonly logger: Logger;
  /** reportingInstance: this replica (pod name). Default os.hostname(). */
  readonly reportingInstance?: string;
  readonly reportingController?: string;
  /** Same pod uid + type + reason + note within this window is dropped. Default 10 min. */
  readonly dedupeWindowMs?: number;
  /** Entries of the dedupe LRU. Default 10,000. */
  readonly dedupeMaxEntries?: number;
  /** Global token bucket. Default 20/s, burst 100. */
  readonly ratePerSec?: number;
  readonly burst?: number;
  /** Per-pod token bucket: `perPodBurst` events, then one per `perPodIntervalMs`. Default 10, 30 s. */
  readonly perPodBurst?: number;
  readonly perPodIntervalMs?: number;
  /** Pods tracked by the per-pod limiter (LRU). Default 10,000. */
  readonly perPodMaxEntries?: number;
  /** Events waiting for a token; beyond that they are dropped. Default 1,000. */
  readonly queueSize?: number;
  /** Requests in flight at once. Default 4. */
  readonly concurrency?: number;
  /**
   * True while more important work is pending (the controller's etcd writes): sending waits,
   * for at most `maxYieldMs` at a time, so that Events never compete with registrations in a
   * burst. Events are informational; registrations are what traffic depends on.
   */
  readonly yieldTo?: () => boolean;
  /** Longest wait for `yieldTo` before sending anyway (sustained load). Default 1,000 ms. */
  readonly maxYieldMs?: number;
  /**
   * True while urgent work is pending (deregistrations: traffic still goes to a pod that is
   * terminating or no longer Ready): sending waits for it without a cap. Such work is short.
   */
  readonly holdWhile?: () => boolean;
  /** Clock and timers (tests). */
  readonly timers?: RecorderTimers;
}

export interface EventRecorderStats {
  readonly sent: number;
  readonly deduped: number;
  /** droppedRateLimited + droppedQueueFull + droppedInvalid + droppedStopped. */
  readonly dropped: number;
  readonly droppedRateLimited: number;
  readonly droppedQueueFull: number;
  readonly droppedInvalid: number;
  readonly droppedStopped: number;
  readonly failed: number;
  readonly queued: number;
  readonly inFlight: number;
}

const DEFAULT_ACTIONS: Readonly<Record<string, string>> = {
  Registered: 'Register',
  Deregistered: 'Deregister',
  InvalidRegistration: 'Validate',
  RegistrationRefused: 'Register',
  DeleteRefused: 'Deregister',
  ServiceNotGranted: 'Register',
};

const MAX_NOTE_BYTES = 1024;
/** How often sending checks again whether `yieldTo` still holds it back. */
const YIELD_POLL_MS = 20;
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

let sequence = 0;

/** The events.k8s.io/v1 Event for a recorded event (pure apart from the name's sequence). */
export function toEventBody(
  event: RecordedEvent,
  reportingController: string,
  reportingInstance: string,
): EventsV1Event {
  sequence = (sequence + 1) % 1_000_000;
  // Like client-go: "<object name>.<unix nanos in hex>"; the sequence keeps names unique
  // within one millisecond.
  const suffix = (BigInt(event.time) * 1_000_000n + BigInt(sequence)).toString(16);
  const base = event.pod.name.slice(0, MAX_NAME - suffix.length - 1);
  return {
    apiVersion: 'events.k8s.io/v1',
    kind: 'Event',
    metadata: { name: `${base}.${suffix}`, namespace: event.pod.namespace },
    eventTime: new V1MicroTime(event.time),
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

/** A token bucket; `capacity` tokens, refilled at `perMs` ms per token. */
interface Bucket {
  tokens: number;
  last: number;
}

function refill(b: Bucket, now: number, capacity: number, msPerToken: number): void {
  if (now > b.last) {
    b.tokens = Math.min(capacity, b.tokens + (now - b.last) / msPerToken);
    b.last = now;
  }
}

const realTimers: RecorderTimers = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

export class EventRecorder {
  readonly #log: Logger;
  readonly #send: SendFn;
  readonly #timers: RecorderTimers;
  readonly #dedupeWindowMs: number;
  readonly #dedupeMax: number;
  readonly #msPerToken: number;
  readonly #burst: number;
  readonly #perPodBurst: number;
  readonly #perPodIntervalMs: number;
  readonly #perPodMax: number;
  readonly #queueSize: number;
  readonly #concurrency: number;
  /** dedupe key -> expiry (epoch ms); Map order = LRU order. */
  readonly #seen = new Map<string, number>();
  readonly #perPod = new Map<string, Bucket>();
  readonly #global: Bucket;
  readonly #queue: { event: RecordedEvent; key: string }[] = [];
  #inFlight = 0;
  #timer: unknown;
  readonly #yieldTo: (() => boolean) | undefined;
  readonly #holdWhile: (() => boolean) | undefined;
  readonly #maxYieldMs: number;
  /** Since when sending has been waiting for `yieldTo`; undefined when not waiting. */
  #yieldingSince: number | undefined;
  #stopped = false;
  #lastWarnAt = -Infinity;
  readonly #idle = new Set<() => void>();
  #c = {
    sent: 0,
    deduped: 0,
    droppedRateLimited: 0,
    droppedQueueFull: 0,
    droppedInvalid: 0,
    droppedStopped: 0,
    failed: 0,
  };

  constructor(opts: EventRecorderOptions) {
    this.#log = opts.logger;
    this.#timers = opts.timers ?? realTimers;
    this.#dedupeWindowMs = opts.dedupeWindowMs ?? 10 * 60_000;
    this.#dedupeMax = opts.dedupeMaxEntries ?? 10_000;
    this.#msPerToken = 1000 / (opts.ratePerSec ?? 20);
    this.#burst = opts.burst ?? 100;
    this.#perPodBurst = opts.perPodBurst ?? 10;
    this.#perPodIntervalMs = opts.perPodIntervalMs ?? 30_000;
    this.#perPodMax = opts.perPodMaxEntries ?? 10_000;
    this.#queueSize = opts.queueSize ?? 1000;
    this.#concurrency = opts.concurrency ?? 4;
    this.#yieldTo = opts.yieldTo;
    this.#holdWhile = opts.holdWhile;
    this.#maxYieldMs = opts.maxYieldMs ?? 1000;
    this.#global = { tokens: this.#burst, last: this.#timers.now() };
    if (opts.send !== undefined) {
      this.#send = opts.send;
    } else if (opts.kubeConfig !== undefined) {
      const api = opts.kubeConfig.makeApiClient(EventsV1Api);
      const controller = opts.reportingController ?? REPORTING_CONTROLLER;
      const instance = opts.reportingInstance || hostname();
      this.#send = async (event) => {
        await api.createNamespacedEvent({
          namespace: event.pod.namespace,
          body: toEventBody(event, controller, instance),
        });
      };
    } else {
      throw new Error('EventRecorder needs a kubeConfig (or a send function)');
    }
  }

  /**
   * Records an event on a pod. Never throws, never waits: the event is sent later, or dropped
   * (counted) when it is a duplicate, over a rate limit, or the queue is full.
   */
  record(pod: PodRef, type: EventType, reason: EventReason, note: string, action?: string): void {
    try {
      this.#record(pod, type, reason, note, action);
    } catch (err) {
      this.#c.droppedInvalid++;
      this.#log.debug({ err: String(err) }, 'event not recorded');
    }
  }

  stats(): EventRecorderStats {
    const c = this.#c;
    return {
      ...c,
      dropped: c.droppedRateLimited + c.droppedQueueFull + c.droppedInvalid + c.droppedStopped,
      queued: this.#queue.length,
      inFlight: this.#inFlight,
    };
  }

  /** Resolves when nothing is queued or in flight, or after timeoutMs. */
  flush(timeoutMs = 5000): Promise<void> {
    if (this.#isIdle()) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = (): void => {
        this.#idle.delete(done);
        clearTimeout(t);
        resolve();
      };
      const t = setTimeout(done, timeoutMs);
      t.unref();
      this.#idle.add(done);
    });
  }

  /** Stops sending: queued events are dropped (counted), later records too. */
  stop(): void {
    this.#stopped = true;
    if (this.#timer !== undefined) this.#timers.clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const item of this.#queue) this.#seen.delete(item.key);
    this.#c.droppedStopped += this.#queue.length;
    this.#queue.length = 0;
    this.#notifyIdle();
  }

  #record(pod: PodRef, type: EventType, reason: string, note: string, action: string | undefined): void {
    if (this.#stopped) {
      this.#c.droppedStopped++;
      return;
    }
    if (!pod?.namespace || !pod.name || !pod.uid || !reason || (type !== 'Normal' && type !== 'Warning')) {
      this.#c.droppedInvalid++;
      this.#log.debug({ pod, type, reason }, 'event dropped: incomplete');
      return;
    }
    const now = this.#timers.now();
    const key = `${pod.uid}\u0000${type}\u0000${reason}\u0000${note}`;
    const expiry = this.#seen.get(key);
    if (expiry !== undefined) {
      if (expiry > now) {
        this.#c.deduped++;
        return;
      }
      this.#seen.delete(key);
    }
    if (!this.#takePodToken(pod.uid, now)) {
      this.#c.droppedRateLimited++;
      this.#log.debug({ pod: `${pod.namespace}/${pod.name}`, reason }, 'event dropped: pod over its event rate');
      return;
    }
    if (this.#queue.length >= this.#queueSize) {
      this.#c.droppedQueueFull++;
      this.#log.debug({ pod: `${pod.namespace}/${pod.name}`, reason }, 'event dropped: queue full');
      return;
    }
    this.#remember(key, now + this.#dedupeWindowMs);
    const event: RecordedEvent = {
      pod: { namespace: pod.namespace, name: pod.name, uid: pod.uid },
      type,
      reason,
      action: action ?? DEFAULT_ACTIONS[reason] ?? reason,
      note,
      time: now,
    };
    this.#queue.push({ event, key });
    this.#pump();
  }

  #remember(key: string, expiry: number): void {
    this.#seen.set(key, expiry);
    while (this.#seen.size > this.#dedupeMax) {
      const oldest = this.#seen.keys().next().value;
      if (oldest === undefined) break;
      this.#seen.delete(oldest);
    }
  }

  #takePodToken(uid: string, now: number): boolean {
    let b = this.#perPod.get(uid);
    if (b === undefined) {
      b = { tokens: this.#perPodBurst, last: now };
    } else {
      this.#perPod.delete(uid); // re-insert below: most recently used last
      refill(b, now, this.#perPodBurst, this.#perPodIntervalMs);
    }
    this.#perPod.set(uid, b);
    while (this.#perPod.size > this.#perPodMax) {
      const oldest = this.#perPod.keys().next().value;
      if (oldest === undefined) break;
      this.#perPod.delete(oldest);
    }
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  #pump(): void {
    while (this.#queue.length > 0 && this.#inFlight < this.#concurrency && !this.#stopped) {
      const now = this.#timers.now();
      if (this.#holdWhile?.() === true) {
        this.#wakeIn(YIELD_POLL_MS);
        return;
      }
      if (this.#yieldTo?.() === true) {
        this.#yieldingSince ??= now;
        if (now - this.#yieldingSince < this.#maxYieldMs) {
          this.#wakeIn(YIELD_POLL_MS);
          return;
        }
      } else {
        this.#yieldingSince = undefined;
      }
      refill(this.#global, now, this.#burst, this.#msPerToken);
      if (this.#global.tokens < 1) {
        this.#wakeIn(Math.max(1, Math.ceil((1 - this.#global.tokens) * this.#msPerToken)));
        return;
      }
      this.#global.tokens -= 1;
      const item = this.#queue.shift();
      if (item === undefined) return;
      this.#inFlight++;
      let sending: Promise<void>;
      try {
        sending = this.#send(item.event);
      } catch (err) {
        sending = Promise.reject(err);
      }
      sending.then(
        () => {
          this.#c.sent++;
        },
        (err: unknown) => {
          this.#c.failed++;
          // Not delivered: let a later record() of the same event try again.
          this.#seen.delete(item.key);
          const now2 = this.#timers.now();
          const fields = {
            pod: `${item.event.pod.namespace}/${item.event.pod.name}`,
            reason: item.event.reason,
            err: describeError(err),
          };
          if (now2 - this.#lastWarnAt >= 60_000) {
            this.#lastWarnAt = now2;
            this.#log.warn(fields, 'could not post event (further failures this minute at debug)');
          } else {
            this.#log.debug(fields, 'could not post event');
          }
        },
      ).finally(() => {
        this.#inFlight--;
        this.#pump();
        if (this.#isIdle()) this.#notifyIdle();
      });
    }
  }

  #wakeIn(ms: number): void {
    if (this.#timer !== undefined) return;
    this.#timer = this.#timers.setTimeout(() => {
      this.#timer = undefined;
      this.#pump();
    }, ms);
  }

  #isIdle(): boolean {
    return this.#queue.length === 0 && this.#inFlight === 0;
  }

  #notifyIdle(): void {
    if (!this.#isIdle()) return;
    for (const f of [...this.#idle]) f();
  }
}

function describeError(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return typeof code === 'number' ? `HTTP ${code}: ${err.message.slice(0, 300)}` : err.message.slice(0, 300);
  }
  return String(err).slice(0, 300);
}
