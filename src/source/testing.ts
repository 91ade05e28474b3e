// Test helpers of the sources (not shipped): the one in-memory ListerWatcher the unit tests of
// the reflector and its kinds run on (the real API server is exercised by the *.int.test.ts
// files), a logger that records its lines, and a poll-until helper.
import assert from 'node:assert/strict';
import { PassThrough, Writable, type Readable } from 'node:stream';
import { pino, type Logger } from 'pino';
import type { ListRequest, ListerWatcher, RawListPage, WatchFromRequest, WatchHandle } from './kube-http.ts';

export const silent = pino({ level: 'silent' });

/** Loop tuning that keeps the tests quick. */
export const fast = { baseMs: 5, maxMs: 20 };

export function capturingLogger(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { logger: pino({ level: 'debug' }, stream), lines };
}

export async function until(what: string, cond: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** An object as the fake API server keeps it: only metadata matters to it. */
export interface FakeObject {
  metadata?: { namespace?: string; name?: string; uid?: string; resourceVersion?: string } | undefined;
}

export interface FakeWatch {
  readonly namespace: string | undefined;
  readonly resourceVersion: string;
  readonly onEvent: (type: string, object: unknown) => void;
  readonly onDone: (err: unknown) => void;
  aborted: boolean;
}

/**
 * An in-memory API server of one kind: objects with resource versions (keyed by uid, or by
 * namespace/name, or by name for a cluster-scoped kind), paged lists, watches per namespace or over all, and switches
 * for the faults the loop must survive.
 */
export class FakeApi<T extends FakeObject = FakeObject> implements ListerWatcher {
  readonly objects = new Map<string, T>();
  rv = 1;
  listCalls: { namespace: string | undefined; continueToken: string | undefined; labelSelector: string | undefined }[] = [];
  watchCalls: { namespace: string | undefined; resourceVersion: string; timeoutSeconds: number }[] = [];
  watches: FakeWatch[] = [];
  failLists = 0;
  listError: unknown = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
  failWatches = 0;
  watchError: unknown = Object.assign(new Error('Forbidden'), { statusCode: 403 });
  /** When set, watches are accepted but closed at once, cleanly. */
  closeWatchesAtOnce = false;
  /** When set, watches never connect (headers never arrive). */
  hangWatches = false;

  put(object: T): T {
    const key = keyOf(object);
    const existed = this.objects.has(key);
    const stored = JSON.parse(JSON.stringify(object)) as T;
    stored.metadata = { ...stored.metadata, resourceVersion: String(++this.rv) };
    this.objects.set(key, stored);
    this.broadcast(stored.metadata.namespace, existed ? 'MODIFIED' : 'ADDED', stored);
    return stored;
  }

  /** Change only the resourceVersion, like a status heartbeat that the slim record ignores. */
  touch(key: string): void {
    const object = this.objects.get(key);
    assert.ok(object, key);
    this.put(object);
  }

  remove(key: string): void {
    const object = this.objects.get(key);
    assert.ok(object, key);
    this.objects.delete(key);
    const copy = { ...object, metadata: { ...object.metadata, resourceVersion: String(++this.rv) } };
    this.broadcast(object.metadata?.namespace, 'DELETED', copy);
  }

  /** Mutate without telling any watcher (what happens during a watch gap). */
  silently(fn: () => void): void {
    const saved = this.watches;
    this.watches = [];
    fn();
    this.watches = saved;
  }

  /** Sends an event to the live watches that cover `namespace`. */
  broadcast(namespace: string | undefined, type: string, object: unknown): void {
    for (const w of this.live()) if (w.namespace === undefined || w.namespace === namespace) w.onEvent(type, object);
  }

  live(): FakeWatch[] {
    return this.watches.filter((w) => !w.aborted);
  }

  /** The one open watch (asserted). */
  get current(): FakeWatch {
    const open = this.live();
    assert.equal(open.length, 1, 'one open watch');
    return open[0]!;
  }

  /** End every live watch as the transport would on a connection error. */
  breakWatches(err: unknown): void {
    for (const w of this.live()) {
      w.aborted = true;
      w.onDone(err);
    }
  }

  async list(req: ListRequest): Promise<RawListPage> {
    this.listCalls.push({ namespace: req.namespace, continueToken: req.continueToken, labelSelector: req.labelSelector });
    await Promise.resolve();
    if (this.failLists > 0) {
      this.failLists--;
      throw this.listError;
    }
    const all = [...this.objects.values()].filter((o) => req.namespace === undefined || o.metadata?.namespace === req.namespace);
    const start = req.continueToken === undefined ? 0 : Number(req.continueToken);
    const items = all.slice(start, start + req.limit);
    const next = start + req.limit < all.length ? String(start + req.limit) : undefined;
    return { items: JSON.parse(JSON.stringify(items)) as T[], resourceVersion: String(this.rv), continueToken: next };
  }

  async watch(req: WatchFromRequest, onEvent: FakeWatch['onEvent'], onDone: FakeWatch['onDone']): Promise<WatchHandle> {
    this.watchCalls.push({ namespace: req.namespace, resourceVersion: req.resourceVersion, timeoutSeconds: req.timeoutSeconds });
    const w: FakeWatch = { namespace: req.namespace, resourceVersion: req.resourceVersion, onEvent, onDone, aborted: false };
    if (this.hangWatches) return new Promise<WatchHandle>(() => {});
    await Promise.resolve();
    if (this.failWatches > 0) {
      this.failWatches--;
      w.aborted = true;
      onDone(this.watchError);
      return { abort() {} };
    }
    this.watches.push(w);
    if (this.closeWatchesAtOnce) {
      queueMicrotask(() => {
        w.aborted = true;
        onDone(null);
      });
    }
    return {
      abort() {
        w.aborted = true;
      },
    };
  }
}

function keyOf(object: FakeObject): string {
  const m = object.metadata;
  if (m?.uid !== undefined) return m.uid;
  return m?.namespace === undefined ? m?.name ?? '' : `${m.namespace}/${m.name ?? ''}`;
}

/** Cuts `buf` at the given offsets (sorted, deduplicated, within bounds): the chunks a body may arrive in. */
export function cut(buf: Buffer, at: readonly number[]): Buffer[] {
  const points = [...new Set(at.map((n) => n % (buf.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let start = 0;
  for (const p of points) {
    out.push(buf.subarray(start, p));
    start = p;
  }
  out.push(buf.subarray(start));
  return out;
}

// --- a minimal protobuf encoder, to build the bytes the API server would send -----------------

function varintBytes(n: number): number[] {
  const out: number[] = [];
  while (n >= 128) {
    out.push((n % 128) | 128);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

/** Protobuf fields, built by hand (field number, wire type, value). */
export const pb = {
  varint: (n: number): Buffer => Buffer.from(varintBytes(n)),
  /** A varint field (wire type 0). */
  int: (field: number, value: number): Buffer => Buffer.from([...varintBytes(field * 8), ...varintBytes(value)]),
  /** A length-delimited field (wire type 2): a string, bytes or an embedded message. */
  bytes: (field: number, payload: Buffer | string): Buffer => {
    const data = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
    return Buffer.concat([Buffer.from([...varintBytes(field * 8 + 2), ...varintBytes(data.length)]), data]);
  },
  /** A 64-bit (wire type 1) and a 32-bit (wire type 5) field. */
  fixed64: (field: number): Buffer => Buffer.concat([Buffer.from(varintBytes(field * 8 + 1)), Buffer.alloc(8, 0xab)]),
  fixed32: (field: number): Buffer => Buffer.concat([Buffer.from(varintBytes(field * 8 + 5)), Buffer.alloc(4, 0xcd)]),
  message: (...fields: Buffer[]): Buffer => Buffer.concat(fields),
  /** "k8s\0" + runtime.Unknown{typeMeta{apiVersion, kind}, raw}. */
  envelope: (kind: string, raw: Buffer, extra: Buffer[] = []): Buffer =>
    Buffer.concat([Buffer.from([0x6b, 0x38, 0x73, 0x00]), pb.bytes(1, Buffer.concat([pb.bytes(1, 'v1'), pb.bytes(2, kind)])), pb.bytes(2, raw), ...extra]),
  /** A watch frame: 4-byte big-endian length + WatchEvent{type, object: RawExtension{raw: envelope}}. */
  frame: (type: string, kind: string, raw: Buffer): Buffer => {
    const event = Buffer.concat([pb.bytes(1, type), pb.bytes(2, pb.bytes(1, pb.envelope(kind, raw)))]);
    const length = Buffer.alloc(4);
    length.writeUInt32BE(event.length);
    return Buffer.concat([length, event]);
  },
};

/** A body whose chunks the test pushes, as an HTTP response body would deliver them. */
export function pushedBody(): { body: Readable; push(chunk: Uint8Array): void; end(): void } {
  const body = new PassThrough();
  return {
    push(chunk) {
      body.write(chunk);
    },
    end() {
      body.end();
    },
    body,
  };
}
