// Kubernetes Events on pods (events.k8s.io/v1), fire and forget (docs/decisions/0021).
//
// record() never throws and never makes the caller wait. Between it and the API server:
//   bounded FIFO queue full? drop, counted (before anything else is spent on the event)
//   -> dedupe (same pod uid + type + reason + note within a window, bounded LRU)
//   -> per-pod token bucket (one flapping pod cannot use the whole budget)
//   -> the queue
//   -> global token bucket + concurrency limit -> send.
// So 10,000 invalid pods cost at most `burst` events at once and `ratePerSec` after that.
// The dedupe window and token buckets are in limits.ts, the Event object and its POST in
// event-api.ts; this file orders them and schedules the sends.
import type { Logger } from 'pino';
import type { KubeAccess } from '../source/kube-access.ts';
import { podKeyOf, podRefOf, type EventType, type PodRef } from '../types.ts';
import { apiEventSender, type RecordedEvent, type ReportingIdentity, type SendFn } from './event-api.ts';
import { DedupeWindow, KeyedTokenBuckets, TokenBucket } from './limits.ts';

/** Known reasons; any other CamelCase reason is accepted too. */
export type EventReason =
  | 'Registered'
  | 'Deregistered'
  | 'InvalidRegistration'
  | 'RegistrationRefused'
  | 'DeleteRefused'
  | (string & {});

export interface RecorderTimers {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface EventRecorderOptions extends ReportingIdentity {
  /** The API server the default send function POSTs Events to. */
  readonly kube?: KubeAccess;
  /** Replaces the API call (tests). */
  readonly send?: SendFn;
  readonly logger: Logger;
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

/** How often sending checks again whether `yieldTo` still holds it back. */
const YIELD_POLL_MS = 20;

const realTimers: RecorderTimers = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

/** An event waiting for a token, with its dedupe key (forgotten if it is not sent). */
interface QueuedEvent {
  readonly event: RecordedEvent;
  readonly key: string;
}

export class EventRecorder {
  readonly #log: Logger;
  readonly #send: SendFn;
  readonly #timers: RecorderTimers;
  readonly #queueSize: number;
  readonly #concurrency: number;
  readonly #dedupe: DedupeWindow;
  readonly #perPod: KeyedTokenBuckets;
  readonly #global: TokenBucket;
  readonly #queue: QueuedEvent[] = [];
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
    this.#dedupe = new DedupeWindow(opts.dedupeWindowMs ?? 10 * 60_000, opts.dedupeMaxEntries ?? 10_000);
    this.#perPod = new KeyedTokenBuckets(opts.perPodBurst ?? 10, opts.perPodIntervalMs ?? 30_000, opts.perPodMaxEntries ?? 10_000);
    this.#global = new TokenBucket(opts.burst ?? 100, 1000 / (opts.ratePerSec ?? 20), this.#timers.now());
    this.#queueSize = opts.queueSize ?? 1000;
    this.#concurrency = opts.concurrency ?? 4;
    this.#yieldTo = opts.yieldTo;
    this.#holdWhile = opts.holdWhile;
    this.#maxYieldMs = opts.maxYieldMs ?? 1000;
    if (opts.send !== undefined) {
      this.#send = opts.send;
    } else if (opts.kube !== undefined) {
      this.#send = apiEventSender(opts.kube, opts);
    } else {
      throw new Error('EventRecorder needs a kube access (or a send function)');
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
    for (const item of this.#queue) this.#dedupe.forget(item.key);
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
    // First, and cheapest: a burst of thousands of pods fills the queue within its first
    // thousand, and an event dropped here must not use up its pod's tokens either.
    if (this.#queue.length >= this.#queueSize) {
      this.#c.droppedQueueFull++;
      this.#log.debug({ pod: podKeyOf(pod), reason }, 'event dropped: queue full');
      return;
    }
    const now = this.#timers.now();
    const key = `${pod.uid}\u0000${type}\u0000${reason}\u0000${note}`;
    if (this.#dedupe.isDuplicate(key, now)) {
      this.#c.deduped++;
      return;
    }
    if (!this.#perPod.take(pod.uid, now)) {
      this.#c.droppedRateLimited++;
      this.#log.debug({ pod: podKeyOf(pod), reason }, 'event dropped: pod over its event rate');
      return;
    }
    this.#dedupe.remember(key, now);
    const event: RecordedEvent = {
      pod: podRefOf(pod),
      type,
      reason,
      action: action ?? DEFAULT_ACTIONS[reason] ?? reason,
      note,
      time: now,
    };
    this.#queue.push({ event, key });
    this.#pump();
  }

  #pump(): void {
    while (this.#queue.length > 0 && this.#inFlight < this.#concurrency && !this.#stopped) {
      const waitMs = this.#waitBeforeSending(this.#timers.now());
      if (waitMs !== undefined) {
        this.#wakeIn(waitMs);
        return;
      }
      const item = this.#queue.shift();
      if (item === undefined) return;
      this.#sendOne(item);
    }
  }

  /**
   * How long sending must wait (deregistrations or, for a while, other important work pending;
   * no global token), or undefined when it may send now: a global token is then taken.
   */
  #waitBeforeSending(now: number): number | undefined {
    if (this.#holdWhile?.() === true) return YIELD_POLL_MS;
    if (this.#yieldTo?.() === true) {
      this.#yieldingSince ??= now;
      if (now - this.#yieldingSince < this.#maxYieldMs) return YIELD_POLL_MS;
    } else {
      this.#yieldingSince = undefined;
    }
    return this.#global.take(now) ? undefined : this.#global.msUntilToken();
  }

  #sendOne(item: QueuedEvent): void {
    this.#inFlight++;
    let sending: Promise<void>;
    try {
      sending = this.#send(item.event);
    } catch (err) {
      sending = Promise.reject(err);
    }
    sending
      .then(
        () => {
          this.#c.sent++;
        },
        (err: unknown) => this.#sendFailed(item, err),
      )
      .finally(() => {
        this.#inFlight--;
        this.#pump();
        if (this.#isIdle()) this.#notifyIdle();
      });
  }

  #sendFailed(item: QueuedEvent, err: unknown): void {
    this.#c.failed++;
    // Not delivered: let a later record() of the same event try again.
    this.#dedupe.forget(item.key);
    const now = this.#timers.now();
    const fields = {
      pod: podKeyOf(item.event.pod),
      reason: item.event.reason,
      err: describeError(err),
    };
    if (now - this.#lastWarnAt >= 60_000) {
      this.#lastWarnAt = now;
      this.#log.warn(fields, 'could not post event (further failures this minute at debug)');
    } else {
      this.#log.debug(fields, 'could not post event');
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
