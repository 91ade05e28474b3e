// etcd's Txn call on the wire: the registry's transactions (txn.ts) encoded straight into
// etcd's protobuf, and etcd's answer decoded into what writes.ts reads — whether it succeeded, at
// which revision, and on failure the failure branch's reads. etcd3's own path turns each request
// into protobufjs messages first and every answer into objects with each int64 as text, ~10 µs
// per key of a burst (docs/benchmarks.md); a succeeded answer's per-key responses are skipped here.
import type { ICompare } from 'etcd3';
import { bytesField, int64Varint, lengthFieldSize, messageFields, ProtobufDecodeError, Reader, readFields, readMessage, varintField, varintSize, Writer } from '../protobuf/wire.ts';

/** The operations the registry's transactions use (a subset of etcd3's IRequestOp). */
export type TxnOp =
  | { readonly request_range: { readonly key: Buffer; readonly range_end?: Buffer } }
  | { readonly request_put: { readonly key: Buffer; readonly value: Buffer; readonly lease?: string | number } }
  | { readonly request_delete_range: { readonly key: Buffer; readonly range_end?: Buffer } };

export interface TxnRequest {
  readonly compare: ICompare[];
  readonly success: TxnOp[];
  readonly failure: TxnOp[];
}

/** A key as a range read returned it (the fields of etcd3's IKeyValue the registry reads). */
export interface StoredKv {
  readonly key: Buffer;
  readonly value: Buffer;
  readonly lease: string;
  readonly mod_revision: string;
  readonly create_revision: string;
}

/** One range read of a failure branch: the keys it found. */
export interface RangeRead {
  readonly kvs: readonly StoredKv[];
}

/** etcd's answer to a transaction. */
export interface TxnAnswer {
  readonly succeeded: boolean;
  /** The store's revision after the transaction (its own, when it wrote). */
  readonly revision: string;
  /** The failure branch's reads, one per operation (an empty read for other kinds); none when it succeeded. */
  readonly reads: readonly RangeRead[];
}

const COMPARE_RESULT: Readonly<Record<string, number>> = { Equal: 0, Greater: 1, Less: 2, NotEqual: 3 };
const COMPARE_TARGET: Readonly<Record<string, number>> = { Version: 0, Create: 1, Mod: 2, Value: 3, Lease: 4 };

// Field numbers of etcd's rpc.proto and kv.proto.
const TXN = { compare: 1, success: 2, failure: 3 } as const;
const CMP = { result: 1, target: 2, key: 3, version: 4, createRevision: 5, modRevision: 6, value: 7, lease: 8, rangeEnd: 64 } as const;
const OP = { range: 1, put: 2, deleteRange: 3 } as const;
const KEY = 1;
const RANGE_END = 2;
const PUT_VALUE = 2;
const PUT_LEASE = 3;

const ZERO = Uint8Array.of(0);
let lastInt64: string | number | undefined;
let lastEncoded: Uint8Array = ZERO;

/** A transaction's int64s repeat (its lease on every put, its create revision 0 on every guard). */
function int64(value: string | number): Uint8Array {
  if (value === 0 || value === '0') return ZERO;
  if (value !== lastInt64) {
    lastEncoded = int64Varint(value);
    lastInt64 = value;
  }
  return lastEncoded;
}

function enumValue(value: string | number | undefined, names: Readonly<Record<string, number>>, what: string): number {
  if (value === undefined) return 0;
  const n = typeof value === 'number' ? value : names[value];
  if (n === undefined || !Number.isInteger(n) || n < 0) throw new RangeError(`txn encoding: unknown compare ${what} ${JSON.stringify(value)}`);
  return n;
}

/** The compare's target_union member: [field, encoded value]; etcd3 sets at most one. */
function compareOperand(c: ICompare): [number, Uint8Array] | undefined {
  let operand: [number, Uint8Array] | undefined;
  const set = (field: number, encoded: Uint8Array): void => {
    if (operand !== undefined) throw new RangeError('txn encoding: a compare with more than one operand');
    operand = [field, encoded];
  };
  if (c.version !== undefined) set(CMP.version, int64(c.version));
  if (c.create_revision !== undefined) set(CMP.createRevision, int64(c.create_revision));
  if (c.mod_revision !== undefined) set(CMP.modRevision, int64(c.mod_revision));
  if (c.value !== undefined) set(CMP.value, c.value);
  if (c.lease !== undefined) set(CMP.lease, int64(c.lease));
  return operand;
}

function operandSize([field, encoded]: [number, Uint8Array]): number {
  return field === CMP.value ? lengthFieldSize(field, encoded.length) : varintSize(field * 8) + encoded.length;
}

interface MeasuredCompare {
  readonly c: ICompare;
  readonly result: number;
  readonly target: number;
  readonly operand: [number, Uint8Array] | undefined;
  readonly size: number;
}

function measureCompare(c: ICompare): MeasuredCompare {
  const result = enumValue(c.result, COMPARE_RESULT, 'result');
  const target = enumValue(c.target, COMPARE_TARGET, 'target');
  const operand = compareOperand(c);
  let size = 0;
  if (result !== 0) size += 1 + varintSize(result);
  if (target !== 0) size += 1 + varintSize(target);
  if (c.key !== undefined) size += lengthFieldSize(CMP.key, c.key.length);
  if (operand !== undefined) size += operandSize(operand);
  if (c.range_end !== undefined) size += lengthFieldSize(CMP.rangeEnd, c.range_end.length);
  return { c, result, target, operand, size };
}

function writeCompare(w: Writer, m: MeasuredCompare): void {
  w.lengthPrefix(TXN.compare, m.size);
  if (m.result !== 0) w.varintField(CMP.result, m.result);
  if (m.target !== 0) w.varintField(CMP.target, m.target);
  if (m.c.key !== undefined) w.bytesField(CMP.key, m.c.key);
  if (m.operand !== undefined) {
    const [field, encoded] = m.operand;
    if (field === CMP.value) w.bytesField(field, encoded);
    else w.int64Field(field, encoded);
  }
  if (m.c.range_end !== undefined) w.bytesField(CMP.rangeEnd, m.c.range_end);
}

/** The operation's field in RequestOp and the size of its message. */
function measureOp(op: TxnOp): { field: number; size: number } {
  if ('request_put' in op) {
    const { key, value, lease } = op.request_put;
    const leaseSize = lease === undefined || lease === 0 || lease === '0' ? 0 : 1 + int64(lease).length;
    return { field: OP.put, size: lengthFieldSize(KEY, key.length) + lengthFieldSize(PUT_VALUE, value.length) + leaseSize };
  }
  const { key, range_end } = 'request_range' in op ? op.request_range : op.request_delete_range;
  const size = lengthFieldSize(KEY, key.length) + (range_end === undefined ? 0 : lengthFieldSize(RANGE_END, range_end.length));
  return { field: 'request_range' in op ? OP.range : OP.deleteRange, size };
}

function writeOp(w: Writer, listField: number, op: TxnOp, measured: { field: number; size: number }): void {
  w.lengthPrefix(listField, lengthFieldSize(measured.field, measured.size));
  w.lengthPrefix(measured.field, measured.size);
  if ('request_put' in op) {
    const { key, value, lease } = op.request_put;
    w.bytesField(KEY, key);
    w.bytesField(PUT_VALUE, value);
    if (lease !== undefined && lease !== 0 && lease !== '0') w.int64Field(PUT_LEASE, int64(lease));
    return;
  }
  const { key, range_end } = 'request_range' in op ? op.request_range : op.request_delete_range;
  w.bytesField(KEY, key);
  if (range_end !== undefined) w.bytesField(RANGE_END, range_end);
}

/** A TxnRequest message, as etcd's Txn call takes it. */
export function encodeTxnRequest(req: TxnRequest): Buffer {
  const compares = req.compare.map(measureCompare);
  const success = req.success.map(measureOp);
  const failure = req.failure.map(measureOp);
  let size = 0;
  for (const m of compares) size += lengthFieldSize(TXN.compare, m.size);
  for (const m of success) size += lengthFieldSize(TXN.success, lengthFieldSize(m.field, m.size));
  for (const m of failure) size += lengthFieldSize(TXN.failure, lengthFieldSize(m.field, m.size));
  const w = new Writer(size);
  for (const m of compares) writeCompare(w, m);
  req.success.forEach((op, i) => writeOp(w, TXN.success, op, success[i]!));
  req.failure.forEach((op, i) => writeOp(w, TXN.failure, op, failure[i]!));
  return w.finish();
}

const NO_READS: readonly RangeRead[] = Object.freeze([]);
const EMPTY_READ: RangeRead = Object.freeze({ kvs: Object.freeze([]) });

interface TxnAnswerFields {
  revision: string;
  succeeded: boolean;
  reads: RangeRead[] | undefined;
}

// etcdserverpb.TxnResponse: header 1, succeeded 2, responses 3. etcd writes `succeeded` before
// `responses`: a succeeded answer's responses are skipped unread.
const TXN_RESPONSE = messageFields<TxnAnswerFields>({
  1: bytesField((r, answer) => (answer.revision = readMessage(r, RESPONSE_HEADER, { revision: '0' }).revision)),
  2: varintField((r, answer) => (answer.succeeded = r.varint() !== 0)),
  3: bytesField((r, answer) => {
    if (answer.succeeded) r.skip(2);
    else (answer.reads ??= []).push(readMessage(r, RESPONSE_OP, { read: EMPTY_READ }).read);
  }),
});

// ResponseHeader: revision 3 (cluster_id, member_id and raft_term unread).
const RESPONSE_HEADER = messageFields<{ revision: string }>({ 3: varintField((r, header) => (header.revision = r.int64Text())) });

// ResponseOp: response_range 1; a put, delete or txn response is an empty read.
const RESPONSE_OP = messageFields<{ read: RangeRead }>({ 1: bytesField((r, op) => (op.read = readRangeResponse(r))) });

/** A TxnResponse message: header.revision, succeeded, and the failure branch's range reads. */
export function decodeTxnResponse(buf: Buffer): TxnAnswer {
  const { succeeded, revision, reads } = readFields(new Reader(buf), TXN_RESPONSE, { revision: '0', succeeded: false, reads: undefined });
  return { succeeded, revision, reads: succeeded ? NO_READS : (reads ?? NO_READS) };
}

interface KeyValueFields {
  key: Buffer | undefined;
  value: Buffer;
  lease: string;
  modRevision: string;
  createRevision: string;
}

// mvccpb.KeyValue: key 1, create_revision 2, mod_revision 3, value 5, lease 6 (version 4 unread).
const KEY_VALUE = messageFields<KeyValueFields>({
  1: bytesField((r, kv) => (kv.key = r.bytes())),
  2: varintField((r, kv) => (kv.createRevision = r.int64Text())),
  3: varintField((r, kv) => (kv.modRevision = r.int64Text())),
  5: bytesField((r, kv) => (kv.value = r.bytes())),
  6: varintField((r, kv) => (kv.lease = r.int64Text())),
});

// RangeResponse: kvs 2 (header, more and count unread).
const RANGE_RESPONSE = messageFields<StoredKv[]>({ 2: bytesField((r, kvs) => kvs.push(readKeyValue(r))) });

function readRangeResponse(r: Reader): RangeRead {
  return { kvs: readMessage(r, RANGE_RESPONSE, []) };
}

function readKeyValue(r: Reader): StoredKv {
  const kv = readMessage<KeyValueFields>(r, KEY_VALUE, { key: undefined, value: Buffer.alloc(0), lease: '0', modRevision: '0', createRevision: '0' });
  if (kv.key === undefined) throw new ProtobufDecodeError('etcd returned a key-value without a key');
  return { key: kv.key, value: kv.value, lease: kv.lease, mod_revision: kv.modRevision, create_revision: kv.createRevision };
}
