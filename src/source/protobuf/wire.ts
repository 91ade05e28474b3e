// The protobuf wire format: a cursor over a message's bytes (varints, length-delimited fields,
// skipping by wire type), map entries, and one loop that reads a message's wanted fields from a
// table and skips the rest. The schemas (envelope.ts, core-v1.ts) are tables of fields, not loops.

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

const SHARED_MAX_LENGTH = 64;
const SHARED_MAX_ENTRIES = 8192;
const shared = new Map<string, string>();

/** A cursor over one message's bytes [pos, end) of `buf`. */
export class Reader {
  readonly buf: Buffer;
  pos: number;
  /** Narrowed to an embedded message while it is read (enter/leave), then restored. */
  end: number;

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

  /**
   * Narrows the cursor to the embedded message that comes next; returns the enclosing message's
   * end, for leave(). Reading a pod's ~30 embedded messages this way allocates no reader for each.
   */
  enter(): number {
    const end = this.lengthEnd();
    const outer = this.end;
    this.end = end;
    return outer;
  }

  /** Back in the enclosing message (its end from enter()), past the embedded one. */
  leave(outer: number): void {
    this.pos = this.end;
    this.end = outer;
  }

  /** A reader of its own over the embedded message that comes next (kept for later); the cursor moves past it. */
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

/** How one wanted field of a message is read into the message's decoded object. */
export interface FieldReader<T> {
  readonly wireType: number;
  readonly read: (r: Reader, into: T) => void;
}

/** A length-delimited field (string, bytes, embedded message, map entry, repeated message). */
export const bytesField = <T>(read: (r: Reader, into: T) => void): FieldReader<T> => ({ wireType: WIRE_LEN, read });

/** A varint field (int32, int64, bool, enum). */
export const varintField = <T>(read: (r: Reader, into: T) => void): FieldReader<T> => ({ wireType: WIRE_VARINT, read });

/** A message's wanted fields, indexed by field number; unlisted fields are skipped. */
export type MessageFields<T> = readonly (FieldReader<T> | undefined)[];

/** The table of a message's wanted fields by number (a dense array: one index per lookup). */
export function messageFields<T>(byNumber: Readonly<Record<number, FieldReader<T>>>): MessageFields<T> {
  const numbers = Object.keys(byNumber).map(Number);
  return Array.from({ length: Math.max(...numbers) + 1 }, (_, n) => byNumber[n]);
}

/** Reads every field of the message under `r` into `into`; unwanted fields are skipped. */
export function readFields<T>(r: Reader, fields: MessageFields<T>, into: T): T {
  while (r.more()) {
    const tag = r.varint();
    const field = fields[tag >>> 3];
    if (field === undefined) {
      r.skip(tag & 7);
      continue;
    }
    checkWireType(tag, field.wireType, r);
    field.read(r, into);
  }
  return into;
}

/** Reads the embedded message that comes next into `into`, on the same cursor. */
export function readMessage<T>(r: Reader, fields: MessageFields<T>, into: T): T {
  const outer = r.enter();
  readFields(r, fields, into);
  r.leave(outer);
  return into;
}

/**
 * `list` with `item` at its end; a new list holds just the item. A list grown from [] by push
 * reserves 17 slots, and a pod's lists (containers, ports, IPs) mostly hold one or two items.
 */
export function append<T>(list: T[] | undefined, item: T): T[] {
  if (list === undefined) return [item];
  list.push(item);
  return list;
}

/** A wanted field must have its schema's wire type: a mismatch is an error, not a guess. */
function checkWireType(tag: number, wireType: number, r: Reader): void {
  if ((tag & 7) !== wireType) throw new ProtobufDecodeError(`field ${Math.floor(tag / 8)} has wire type ${tag & 7}, expected ${wireType}, at byte ${r.pos}`);
}

/**
 * Adds the map<string, string> entry that comes next (an embedded message {key = 1, value = 2})
 * to `into`. Not a table like the other messages: labels and annotations are the most frequent
 * messages of a pod, and a plain loop without per-entry state keeps them cheap.
 */
export function readMapEntry(r: Reader, into: Record<string, string>): void {
  const outer = r.enter();
  let key = '';
  let value = '';
  while (r.more()) {
    const tag = r.varint();
    const field = tag >>> 3;
    if (field === 1) {
      checkWireType(tag, WIRE_LEN, r);
      key = r.string();
    } else if (field === 2) {
      checkWireType(tag, WIRE_LEN, r);
      value = r.sharedString();
    } else r.skip(tag & 7);
  }
  r.leave(outer);
  // Like JSON.parse, a '__proto__' key becomes an own property, never the prototype. Only that
  // key needs defineProperty: it is ~10x slower than a plain store, on the most frequent field.
  if (key === '__proto__') Object.defineProperty(into, key, { value, enumerable: true, writable: true, configurable: true });
  else into[key] = value;
}
