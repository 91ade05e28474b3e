// The waits of one reflector stream (reflector.ts), each of which stop() can end early: one
// watch under its connect timeout and watchdog, a list page under its timeout, a backoff sleep.
import type { WatchHandle } from './kube-http.ts';
import { describeError, statusCodeOf } from './kube-http.ts';

/** A stream's hook for stop(): ends whatever the stream is waiting for. */
export interface Interruptible {
  interrupt: (() => void) | undefined;
}

/** How one watch ended. */
export type WatchOutcome =
  | { readonly kind: 'closed' }
  | { readonly kind: 'watchdog' }
  | { readonly kind: 'stopped' }
  | { readonly kind: 'gone'; readonly error: unknown }
  | { readonly kind: 'error'; readonly error: unknown };

export interface WatchOnceOptions {
  /** Singular kind name for errors. */
  readonly what: string;
  /** Opens the watch (ListerWatcher.watch with the stream's request filled in). */
  readonly open: (onEvent: (type: string, object: unknown) => void, onDone: (err: unknown) => void) => Promise<WatchHandle>;
  /** Give up when the response headers did not arrive in this long (an error). */
  readonly connectTimeoutMs: number;
  /** End a watch that delivered nothing, not even a bookmark, for this long (outcome watchdog). */
  readonly watchdogMs: number;
  /** Every event but ERROR (which ends the watch), in order. */
  readonly onEvent: (type: string, object: unknown) => void;
  /** Called synchronously when the watch fails (gone, error): before the promise settles. */
  readonly onFailed: () => void;
}

/** Runs one watch until it ends; resolves with how (never rejects). */
export function watchOnce(s: Interruptible, opts: WatchOnceOptions): Promise<WatchOutcome> {
  return new Promise<WatchOutcome>((resolve) => {
    let settled = false;
    let handle: WatchHandle | undefined;
    let connected = false;
    let lastActivity = Date.now();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const finish = (outcome: WatchOutcome): void => {
      if (settled) return;
      settled = true;
      if (timer !== undefined) clearTimeout(timer);
      if (s.interrupt === interrupt) s.interrupt = undefined;
      handle?.abort();
      if (outcome.kind === 'gone' || outcome.kind === 'error') opts.onFailed();
      resolve(outcome);
    };
    const interrupt = (): void => finish({ kind: 'stopped' });
    s.interrupt = interrupt;
    const check = (): void => {
      if (!connected) {
        finish({ kind: 'error', error: new Error(`${opts.what} watch connect timed out`) });
        return;
      }
      const idle = Date.now() - lastActivity;
      if (idle >= opts.watchdogMs) finish({ kind: 'watchdog' });
      else timer = setTimeout(check, opts.watchdogMs - idle);
    };
    timer = setTimeout(check, opts.connectTimeoutMs);

    const onEvent = (type: string, object: unknown): void => {
      if (settled) return;
      lastActivity = Date.now();
      if (type !== 'ERROR') {
        opts.onEvent(type, object);
        return;
      }
      const gone = (object as { code?: unknown } | null)?.code === 410;
      finish(gone ? { kind: 'gone', error: object } : { kind: 'error', error: object });
    };
    const onDone = (err: unknown): void => {
      if (err === null || err === undefined) finish({ kind: 'closed' });
      else if (err instanceof Error && err.name === 'TimeoutError') finish({ kind: 'watchdog' });
      else if (statusCodeOf(err) === 410) finish({ kind: 'gone', error: err });
      else finish({ kind: 'error', error: err });
    };
    let promise: Promise<WatchHandle>;
    try {
      promise = opts.open(onEvent, onDone);
    } catch (err) {
      promise = Promise.reject(err);
    }
    promise.then(
      (h) => {
        handle = h;
        if (settled) {
          h.abort();
          return;
        }
        connected = true;
        lastActivity = Date.now();
        if (timer !== undefined) clearTimeout(timer);
        timer = setTimeout(check, opts.watchdogMs);
      },
      (err: unknown) => onDone(err ?? new Error(`${opts.what} watch failed`)),
    );
  });
}

/** Waits `ms`, or less if interrupted. */
export function interruptibleSleep(s: Interruptible, ms: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      if (s.interrupt === done) s.interrupt = undefined;
      resolve();
    };
    const timer = setTimeout(done, ms);
    s.interrupt = done;
  });
}

/** Races a request against a timeout (rejects with `message`) and an interrupt (rejects with `stopped()`). */
export function interruptibleRequest<T>(s: Interruptible, promise: Promise<T>, ms: number, message: string, stopped: () => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const end = (): void => {
      clearTimeout(timer);
      if (s.interrupt === interrupt) s.interrupt = undefined;
    };
    const interrupt = (): void => {
      end();
      reject(stopped());
    };
    const timer = setTimeout(() => {
      end();
      reject(new Error(message));
    }, ms);
    s.interrupt = interrupt;
    promise.then(
      (value) => {
        end();
        resolve(value);
      },
      (err: unknown) => {
        end();
        reject(err instanceof Error ? err : new Error(describeError(err)));
      },
    );
  });
}
