// The protobuf wire format: a cursor over a message's bytes (varints, length-delimited fields,
// skipping by wire type), map entries, and one loop that reads a message's wanted fields from a
// table and skips the rest; and a writer into a buffer of a size known beforehand. Kubernetes'
// schemas (source/protobuf/envelope.ts, core-v1.ts) are tables of fields, not loops; etcd's
// transactions (registry/txn-wire.ts) are the writer's.

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

  /**
   * An int64 varint as decimal text: etcd's lease IDs use all 64 bits, past a number's 2^53. Up
   * to seven bytes (49 bits: every revision) are read as a number.
   */
  int64Text(): string {
    const buf = this.buf;
    const start = this.pos;
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 7; i++) {
      if (this.pos >= this.end) throw new ProtobufDecodeError(`truncated varint at byte ${start} of ${this.end}`);
      const b = buf[this.pos++]!;
      value += (b & 0x7f) * scale;
      if (b < 0x80) return String(value);
      scale *= 128;
    }
    let big = BigInt(value);
    for (let shift = 49n; shift < 70n; shift += 7n) {
      if (this.pos >= this.end) throw new ProtobufDecodeError(`truncated varint at byte ${start} of ${this.end}`);
      const b = buf[this.pos++]!;
      big |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return BigInt.asIntN(64, big).toString();
    }
    throw new ProtobufDecodeError(`varint longer than 10 bytes at byte ${start}`);
  }

  /** A bytes field, copied out of the buffer (which the caller may reuse). */
  bytes(): Buffer {
    const end = this.lengthEnd();
    const copy = Buffer.from(this.buf.subarray(this.pos, end));
    this.pos = end;
    return copy;
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

/** Bytes of `n` (a non-negative safe integer) as a varint. */
export function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

/** Bytes of a length-delimited field (tag below 2^11, as all of etcd's are) holding `length` bytes. */
export function lengthFieldSize(field: number, length: number): number {
  return varintSize(field * 8) + varintSize(length) + length;
}

/**
 * The varint encoding of an int64 given as decimal text or a number (how etcd3's request types
 * carry lease IDs and revisions); a negative value takes ten bytes, as two's complement.
 */
export function int64Varint(value: string | number): Uint8Array {
  if (typeof value === 'string' ? !/^-?\d{1,20}$/.test(value) : !Number.isSafeInteger(value)) {
    throw new RangeError(`not an int64: ${JSON.stringify(value)}`);
  }
  const n = BigInt(value);
  if (n < -(2n ** 63n) || n >= 2n ** 63n) throw new RangeError(`not an int64: ${value}`);
  let rest = BigInt.asUintN(64, n);
  const out: number[] = [];
  while (rest >= 0x80n) {
    out.push(Number(rest & 0x7fn) | 0x80);
    rest >>= 7n;
  }
  out.push(Number(rest));
  return Uint8Array.from(out);
}

/** Writes a message into a buffer of the exact size the caller measured beforehand. */
export class Writer {
  readonly buf: Buffer;
  pos = 0;

  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }

  varint(n: number): void {
    while (n >= 0x80) {
      this.buf[this.pos++] = (n % 128) | 0x80;
      n = Math.floor(n / 128);
    }
    this.buf[this.pos++] = n;
  }

  /** A varint field (enum, bool, small int). */
  varintField(field: number, n: number): void {
    this.varint(field * 8 + WIRE_VARINT);
    this.varint(n);
  }

  /** An int64 field from its encoding (int64Varint). */
  int64Field(field: number, encoded: Uint8Array): void {
    this.varint(field * 8 + WIRE_VARINT);
    this.buf.set(encoded, this.pos);
    this.pos += encoded.length;
  }

  /** A bytes field. */
  bytesField(field: number, bytes: Uint8Array): void {
    this.lengthPrefix(field, bytes.length);
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
  }

  /** The tag and length of a length-delimited field whose `length` bytes the caller writes next. */
  lengthPrefix(field: number, length: number): void {
    this.varint(field * 8 + WIRE_LEN);
    this.varint(length);
  }

  /** The buffer, checked to be filled exactly (a measuring mistake must not send garbage). */
  finish(): Buffer {
    if (this.pos !== this.buf.length) throw new Error(`protobuf writer: wrote ${this.pos} bytes into a message measured at ${this.buf.length}`);
    return this.buf;
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
