// A partial decoder of the Kubernetes protobuf wire format (application/vnd.kubernetes.protobuf):
// only the fields the kinds' valueOf reads (slim.ts, value-source.ts) are decoded, every other
// field is skipped by its wire type and never materialised. The objects produced have the shape
// of the JSON the API server sends (timestamps as RFC 3339 strings, maps as plain records, lists
// as arrays), so one mapping (toSlimPod, the value sources) serves both content types.
//
// Field numbers are those of k8s.io/api core/v1 and k8s.io/apimachinery pkg/apis/meta/v1 and
// pkg/runtime generated.proto (docs/decisions/0022-protobuf-intake.md lists them).

/** A body, frame or field that is not what the wire format or the envelope allows. */
export class ProtobufDecodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProtobufDecodeError';
  }
}

const WIRE_VARINT = 0;
const WIRE_I64 = 1;
const WIRE_LEN = 2;
const WIRE_I32 = 5;

/** The 4 bytes before every protobuf-encoded object of the API server ("k8s\0"). */
const MAGIC = [0x6b, 0x38, 0x73, 0x00] as const;

const SHARED_MAX_LENGTH = 64;
const SHARED_MAX_ENTRIES = 8192;
const shared = new Map<string, string>();

/** A cursor over one message's bytes [pos, end) of `buf`. */
export class Reader {
  readonly buf: Buffer;
  pos: number;
  readonly end: number;

  constructor(buf: Buffer, pos = 0, end = buf.length) {
    this.buf = buf;
    this.pos = pos;
    this.end = end;
  }

  /** A varint as a number (exact up to 2^53; field tags, lengths, int32/int64/bool). */
  varint(): number {
    const buf = this.buf;
    let pos = this.pos;
    // Fast path: one byte (tags, small lengths, bools).
    if (pos < this.end) {
      const b = buf[pos]!;
      if (b < 0x80) {
        this.pos = pos + 1;
        return b;
      }
    }
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (pos >= this.end) throw new ProtobufDecodeError(`truncated varint at byte ${this.pos} of ${this.end}`);
      const b = buf[pos++]!;
      result += (b & 0x7f) * scale;
      if (b < 0x80) {
        this.pos = pos;
        return result;
      }
      scale *= 128;
    }
    throw new ProtobufDecodeError(`varint longer than 10 bytes at byte ${this.pos}`);
  }

  /** The end of a length-delimited field whose length comes next; the cursor moves to its start. */
  lengthEnd(): number {
    const len = this.varint();
    const end = this.pos + len;
    if (end > this.end) throw new ProtobufDecodeError(`field of ${len} bytes at byte ${this.pos} overruns its message (ends at ${this.end})`);
    return end;
  }

  string(): string {
    const end = this.lengthEnd();
    const s = this.buf.toString('utf8', this.pos, end);
    this.pos = end;
    return s;
  }

  /**
   * A string that many objects share (a namespace, a phase, a label value, a host IP): one copy
   * is kept for all of them, as JSON.parse does for short repeated values, instead of one per pod
   * in the cache.
   */
  sharedString(): string {
    const s = this.string();
    if (s.length > SHARED_MAX_LENGTH) return s;
    const known = shared.get(s);
    if (known !== undefined) return known;
    // Bounded: values unique per pod (hashes) must not grow the table for ever.
    if (shared.size >= SHARED_MAX_ENTRIES) shared.clear();
    shared.set(s, s);
    return s;
  }

  /** A reader over the embedded message that comes next; the cursor moves past it. */
  message(): Reader {
    const end = this.lengthEnd();
    const sub = new Reader(this.buf, this.pos, end);
    this.pos = end;
    return sub;
  }

  /** Skips one field's value by its wire type (groups are not used by Kubernetes). */
  skip(wireType: number): void {
    switch (wireType) {
      case WIRE_VARINT:
        this.varint();
        return;
      case WIRE_I64:
        this.advance(8);
        return;
      case WIRE_LEN:
        this.pos = this.lengthEnd();
        return;
      case WIRE_I32:
        this.advance(4);
        return;
      default:
        throw new ProtobufDecodeError(`unsupported wire type ${wireType} at byte ${this.pos}`);
    }
  }

  more(): boolean {
    return this.pos < this.end;
  }

  private advance(n: number): void {
    if (this.pos + n > this.end) throw new ProtobufDecodeError(`truncated fixed-width field at byte ${this.pos}`);
    this.pos += n;
  }
}

/** Reads the next tag: [field number, wire type]; the wire type of a wanted field is checked with want(). */
function tag(r: Reader): number {
  return r.varint();
}

/** The field's wire type must be `wireType` (a schema mismatch is an error, not a guess). */
function want(t: number, wireType: number, r: Reader): void {
  if ((t & 7) !== wireType) throw new ProtobufDecodeError(`field ${Math.floor(t / 8)} has wire type ${t & 7}, expected ${wireType}, at byte ${r.pos}`);
}

// --- meta/v1 -------------------------------------------------------------------------------------

/** meta/v1 Time {seconds = 1, nanos = 2} as RFC 3339 in whole seconds, the JSON form. */
function time(r: Reader): string {
  let seconds = 0;
  while (r.more()) {
    const t = tag(r);
    if (t >>> 3 === 1) {
      want(t, WIRE_VARINT, r);
      seconds = r.varint();
    } else r.skip(t & 7);
  }
  // JSON carries whole seconds (RFC 3339); nanos are dropped so both content types agree.
  return new Date(seconds * 1000).toISOString().replace('.000Z', 'Z');
}

/** A map<string, string> entry {key = 1, value = 2} into `into`. */
function mapEntry(r: Reader, into: Record<string, string>): void {
  let key = '';
  let value = '';
  while (r.more()) {
    const t = tag(r);
    const field = t >>> 3;
    if (field === 1) {
      want(t, WIRE_LEN, r);
      key = r.string();
    } else if (field === 2) {
      want(t, WIRE_LEN, r);
      value = r.sharedString();
    } else r.skip(t & 7);
  }
  // Like JSON.parse, a '__proto__' key becomes an own property, never the prototype.
  Object.defineProperty(into, key, { value, enumerable: true, writable: true, configurable: true });
}

export interface DecodedMeta {
  name?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

/**
 * meta/v1 ObjectMeta: name = 1, namespace = 3, uid = 5, resourceVersion = 6,
 * creationTimestamp = 8, deletionTimestamp = 9, labels = 11, annotations = 12.
 */
function objectMeta(r: Reader): DecodedMeta {
  const m: DecodedMeta = {};
  while (r.more()) {
    const t = tag(r);
    switch (t >>> 3) {
      case 1:
        want(t, WIRE_LEN, r);
        m.name = r.string();
        break;
      case 3:
        want(t, WIRE_LEN, r);
        m.namespace = r.sharedString();
        break;
      case 5:
        want(t, WIRE_LEN, r);
        m.uid = r.string();
        break;
      case 6:
        want(t, WIRE_LEN, r);
        m.resourceVersion = r.string();
        break;
      case 8:
        want(t, WIRE_LEN, r);
        m.creationTimestamp = time(r.message());
        break;
      case 9:
        want(t, WIRE_LEN, r);
        m.deletionTimestamp = time(r.message());
        break;
      case 11:
        want(t, WIRE_LEN, r);
        mapEntry(r.message(), (m.labels ??= {}));
        break;
      case 12:
        want(t, WIRE_LEN, r);
        mapEntry(r.message(), (m.annotations ??= {}));
        break;
      default:
        r.skip(t & 7);
    }
  }
  return m;
}

/** meta/v1 ListMeta: resourceVersion = 2, continue = 3. */
function listMeta(r: Reader): { resourceVersion?: string; continue?: string } {
  const m: { resourceVersion?: string; continue?: string } = {};
  while (r.more()) {
    const t = tag(r);
    const field = t >>> 3;
    if (field === 2) {
      want(t, WIRE_LEN, r);
      m.resourceVersion = r.string();
    } else if (field === 3) {
      want(t, WIRE_LEN, r);
      m.continue = r.string();
    } else r.skip(t & 7);
  }
  return m;
}

/** meta/v1 Status: status = 2, message = 3, reason = 4, code = 6 (an in-stream ERROR, an error body). */
export function decodeStatus(r: Reader): { kind: 'Status'; status?: string; message?: string; reason?: string; code?: number } {
  const s: { kind: 'Status'; status?: string; message?: string; reason?: string; code?: number } = { kind: 'Status' };
  while (r.more()) {
    const t = tag(r);
    switch (t >>> 3) {
      case 2:
        want(t, WIRE_LEN, r);
        s.status = r.string();
        break;
      case 3:
        want(t, WIRE_LEN, r);
        s.message = r.string();
        break;
      case 4:
        want(t, WIRE_LEN, r);
        s.reason = r.string();
        break;
      case 6:
        want(t, WIRE_VARINT, r);
        s.code = r.varint() | 0;
        break;
      default:
        r.skip(t & 7);
    }
  }
  return s;
}

// --- core/v1 -------------------------------------------------------------------------------------

/** An object of a kind that only needs its metadata (Node, Namespace): metadata = 1. */
export function decodeMetadataObject(r: Reader): { metadata?: DecodedMeta } {
  const o: { metadata?: DecodedMeta } = {};
  while (r.more()) {
    const t = tag(r);
    if (t >>> 3 === 1) {
      want(t, WIRE_LEN, r);
      o.metadata = objectMeta(r.message());
    } else r.skip(t & 7);
  }
  return o;
}

interface DecodedPort {
  name?: string;
  containerPort?: number;
}

/** core/v1 ContainerPort: name = 1, containerPort = 3. */
function containerPort(r: Reader): DecodedPort {
  const p: DecodedPort = {};
  while (r.more()) {
    const t = tag(r);
    const field = t >>> 3;
    if (field === 1) {
      want(t, WIRE_LEN, r);
      p.name = r.sharedString();
    } else if (field === 3) {
      want(t, WIRE_VARINT, r);
      p.containerPort = r.varint() | 0;
    } else r.skip(t & 7);
  }
  return p;
}

/** core/v1 Container: ports = 6 (nothing else of a container is read). */
function container(r: Reader): { ports?: DecodedPort[] } {
  const c: { ports?: DecodedPort[] } = {};
  while (r.more()) {
    const t = tag(r);
    if (t >>> 3 === 6) {
      want(t, WIRE_LEN, r);
      (c.ports ??= []).push(containerPort(r.message()));
    } else r.skip(t & 7);
  }
  return c;
}

/** core/v1 PodSpec: containers = 2, nodeName = 10. */
function podSpec(r: Reader): { containers?: { ports?: DecodedPort[] }[]; nodeName?: string } {
  const s: { containers?: { ports?: DecodedPort[] }[]; nodeName?: string } = {};
  while (r.more()) {
    const t = tag(r);
    const field = t >>> 3;
    if (field === 2) {
      want(t, WIRE_LEN, r);
      (s.containers ??= []).push(container(r.message()));
    } else if (field === 10) {
      want(t, WIRE_LEN, r);
      s.nodeName = r.sharedString();
    } else r.skip(t & 7);
  }
  return s;
}

/** core/v1 PodIP and HostIP: ip = 1 (a host IP is shared by the pods of its node). */
function ipEntry(r: Reader, share: boolean): { ip?: string } {
  const e: { ip?: string } = {};
  while (r.more()) {
    const t = tag(r);
    if (t >>> 3 === 1) {
      want(t, WIRE_LEN, r);
      e.ip = share ? r.sharedString() : r.string();
    } else r.skip(t & 7);
  }
  return e;
}

/** core/v1 PodCondition: type = 1, status = 2. */
function podCondition(r: Reader): { type?: string; status?: string } {
  const c: { type?: string; status?: string } = {};
  while (r.more()) {
    const t = tag(r);
    const field = t >>> 3;
    if (field === 1) {
      want(t, WIRE_LEN, r);
      c.type = r.string();
    } else if (field === 2) {
      want(t, WIRE_LEN, r);
      c.status = r.string();
    } else r.skip(t & 7);
  }
  return c;
}

interface DecodedPodStatus {
  phase?: string;
  conditions?: { type?: string; status?: string }[];
  hostIP?: string;
  podIP?: string;
  podIPs?: { ip?: string }[];
  hostIPs?: { ip?: string }[];
}

/** core/v1 PodStatus: phase = 1, conditions = 2, hostIP = 5, podIP = 6, podIPs = 12, hostIPs = 16. */
function podStatus(r: Reader): DecodedPodStatus {
  const s: DecodedPodStatus = {};
  while (r.more()) {
    const t = tag(r);
    switch (t >>> 3) {
      case 1:
        want(t, WIRE_LEN, r);
        s.phase = r.sharedString();
        break;
      case 2:
        want(t, WIRE_LEN, r);
        (s.conditions ??= []).push(podCondition(r.message()));
        break;
      case 5:
        want(t, WIRE_LEN, r);
        s.hostIP = r.sharedString();
        break;
      case 6:
        want(t, WIRE_LEN, r);
        s.podIP = r.string();
        break;
      case 12:
        want(t, WIRE_LEN, r);
        (s.podIPs ??= []).push(ipEntry(r.message(), false));
        break;
      case 16:
        want(t, WIRE_LEN, r);
        (s.hostIPs ??= []).push(ipEntry(r.message(), true));
        break;
      default:
        r.skip(t & 7);
    }
  }
  return s;
}

/** core/v1 Pod: metadata = 1, spec = 2, status = 3. */
export function decodePod(r: Reader): { metadata?: DecodedMeta; spec?: ReturnType<typeof podSpec>; status?: DecodedPodStatus } {
  const p: { metadata?: DecodedMeta; spec?: ReturnType<typeof podSpec>; status?: DecodedPodStatus } = {};
  while (r.more()) {
    const t = tag(r);
    switch (t >>> 3) {
      case 1:
        want(t, WIRE_LEN, r);
        p.metadata = objectMeta(r.message());
        break;
      case 2:
        want(t, WIRE_LEN, r);
        p.spec = podSpec(r.message());
        break;
      case 3:
        want(t, WIRE_LEN, r);
        p.status = podStatus(r.message());
        break;
      default:
        r.skip(t & 7);
    }
  }
  return p;
}

/** Decodes one object of a kind (a Pod, a Node) from its message bytes. */
export type ObjectDecoder = (r: Reader) => unknown;

// --- the envelope: "k8s\0" + runtime.Unknown ------------------------------------------------------

/** runtime.Unknown {typeMeta = 1 {apiVersion = 1, kind = 2}, raw = 2, contentEncoding = 3, contentType = 4}. */
export interface Envelope {
  readonly kind: string;
  readonly apiVersion: string;
  /** The object's message bytes (`raw`). */
  readonly raw: Reader;
}

function unknown(r: Reader): Envelope {
  let kind = '';
  let apiVersion = '';
  let raw: Reader | undefined;
  let contentEncoding = '';
  let contentType = '';
  while (r.more()) {
    const t = tag(r);
    switch (t >>> 3) {
      case 1: {
        want(t, WIRE_LEN, r);
        const tm = r.message();
        while (tm.more()) {
          const tt = tag(tm);
          const field = tt >>> 3;
          if (field === 1) {
            want(tt, WIRE_LEN, tm);
            apiVersion = tm.string();
          } else if (field === 2) {
            want(tt, WIRE_LEN, tm);
            kind = tm.string();
          } else tm.skip(tt & 7);
        }
        break;
      }
      case 2:
        want(t, WIRE_LEN, r);
        raw = r.message();
        break;
      case 3:
        want(t, WIRE_LEN, r);
        contentEncoding = r.string();
        break;
      case 4:
        want(t, WIRE_LEN, r);
        contentType = r.string();
        break;
      default:
        r.skip(t & 7);
    }
  }
  if (contentEncoding !== '') throw new ProtobufDecodeError(`unsupported content encoding ${JSON.stringify(contentEncoding)} of a ${kind || 'object'}`);
  if (contentType !== '' && contentType !== 'application/vnd.kubernetes.protobuf') {
    throw new ProtobufDecodeError(`unexpected content type ${JSON.stringify(contentType)} inside a ${kind || 'object'}`);
  }
  return { kind, apiVersion, raw: raw ?? new Reader(r.buf, r.end, r.end) };
}

/** The envelope of an encoded object: the magic, then a runtime.Unknown. */
export function decodeEnvelope(r: Reader): Envelope {
  const { buf } = r;
  if (r.end - r.pos < MAGIC.length || MAGIC.some((b, i) => buf[r.pos + i] !== b)) {
    throw new ProtobufDecodeError(`not a Kubernetes protobuf object: the "k8s\\0" prefix is missing (${r.end - r.pos} bytes)`);
  }
  return unknown(new Reader(buf, r.pos + MAGIC.length, r.end));
}

/** A list body (PodList, NodeList, ...: metadata = 1 ListMeta, items = 2). */
export function decodeList(body: Buffer, item: ObjectDecoder): { items: unknown[]; metadata: { resourceVersion?: string; continue?: string } } {
  const env = decodeEnvelope(new Reader(body));
  if (!env.kind.endsWith('List')) throw new ProtobufDecodeError(`expected a list, got ${env.kind || 'an object without a kind'}`);
  const r = env.raw;
  const items: unknown[] = [];
  let metadata: { resourceVersion?: string; continue?: string } = {};
  while (r.more()) {
    const t = tag(r);
    const field = t >>> 3;
    if (field === 1) {
      want(t, WIRE_LEN, r);
      metadata = listMeta(r.message());
    } else if (field === 2) {
      want(t, WIRE_LEN, r);
      items.push(item(r.message()));
    } else r.skip(t & 7);
  }
  return { items, metadata };
}

/** An object in an envelope: a Status (ERROR events, error bodies) or the kind's object. */
export function decodeObject(r: Reader, item: ObjectDecoder): unknown {
  const env = decodeEnvelope(r);
  return env.kind === 'Status' ? decodeStatus(env.raw) : item(env.raw);
}

/** runtime.RawExtension {raw = 1}: the enveloped object's bytes. */
function rawExtension(r: Reader, item: ObjectDecoder): unknown {
  let object: unknown;
  while (r.more()) {
    const t = tag(r);
    if (t >>> 3 === 1) {
      want(t, WIRE_LEN, r);
      object = decodeObject(r.message(), item);
    } else r.skip(t & 7);
  }
  return object;
}

/**
 * One watch frame: meta/v1 WatchEvent {type = 1, object = 2 (RawExtension, whose bytes are an
 * enveloped object)}.
 */
export function decodeWatchEvent(frame: Buffer, item: ObjectDecoder): { type: string; object: unknown } {
  const r = new Reader(frame);
  let type = '';
  let object: unknown;
  while (r.more()) {
    const t = tag(r);
    const field = t >>> 3;
    if (field === 1) {
      want(t, WIRE_LEN, r);
      type = r.string();
    } else if (field === 2) {
      want(t, WIRE_LEN, r);
      object = rawExtension(r.message(), item);
    } else r.skip(t & 7);
  }
  if (type === '') throw new ProtobufDecodeError(`watch event without a type (${frame.length} bytes)`);
  if (object === undefined) throw new ProtobufDecodeError(`${type} watch event without an object`);
  return { type, object };
}

/** A frame longer than this is refused: the API server limits an object to a few MiB. */
export const MAX_FRAME_BYTES = 64 * 1024 * 1024;

/**
 * Splits a protobuf watch stream into frames (a 4-byte big-endian length, then that many bytes)
 * and hands each whole frame to `onFrame`. A length beyond MAX_FRAME_BYTES throws; end() throws
 * when the stream stopped inside a frame (a truncated frame is an error, never skipped).
 */
export class FrameSplitter {
  readonly #onFrame: (frame: Buffer) => void;
  /** Bytes of an unfinished frame, from earlier chunks (copied), and their total length. */
  #pending: Buffer[] = [];
  #pendingBytes = 0;

  constructor(onFrame: (frame: Buffer) => void) {
    this.#onFrame = onFrame;
  }

  push(chunk: Uint8Array): void {
    let buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    if (this.#pendingBytes > 0) {
      // Join only once the frame is complete: a large frame over many chunks is copied once.
      const total = this.#pendingBytes + buf.length;
      const head = this.#pending[0]!.length >= 4 ? this.#pending[0]! : Buffer.concat([...this.#pending, buf]);
      if (total < 4 || total < 4 + this.#lengthOf(head)) {
        this.#pending.push(Buffer.from(buf));
        this.#pendingBytes = total;
        return;
      }
      buf = Buffer.concat([...this.#pending, buf], total);
      this.#pending = [];
      this.#pendingBytes = 0;
    }
    let pos = 0;
    while (buf.length - pos >= 4) {
      const len = this.#lengthOf(buf, pos);
      if (buf.length - pos - 4 < len) break;
      const frame = buf.subarray(pos + 4, pos + 4 + len);
      pos += 4 + len;
      this.#onFrame(frame);
    }
    // Copy: the caller may reuse the chunk's memory.
    if (pos < buf.length) {
      this.#pending = [Buffer.from(buf.subarray(pos))];
      this.#pendingBytes = buf.length - pos;
    }
  }

  /** The stream ended: it must end on a frame boundary. */
  end(): void {
    const left = this.#pendingBytes;
    if (left === 0) return;
    const head = Buffer.concat(this.#pending);
    this.#pending = [];
    this.#pendingBytes = 0;
    const expected = left >= 4 ? `${head.readUInt32BE(0)}-byte frame` : 'frame length prefix';
    throw new ProtobufDecodeError(`watch stream ended inside a ${expected} (${left} bytes received, truncated)`);
  }

  #lengthOf(buf: Buffer, pos = 0): number {
    const len = buf.readUInt32BE(pos);
    if (len > MAX_FRAME_BYTES) throw new ProtobufDecodeError(`watch frame of ${len} bytes exceeds the ${MAX_FRAME_BYTES}-byte limit (corrupt length prefix?)`);
    return len;
  }
}
