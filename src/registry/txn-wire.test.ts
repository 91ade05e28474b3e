// The registry's own Txn encoding against etcd3's: the same requests must mean the same to etcd,
// and etcd's answers must read the same, judged by etcd3's own protobuf definitions of etcd's API.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import fc from 'fast-check';
import type { ICompare } from 'etcd3';
import { int64Varint, ProtobufDecodeError, Reader } from '../protobuf/wire.ts';
import { decodeTxnResponse, encodeTxnRequest, type TxnOp, type TxnRequest } from './txn-wire.ts';

// etcd3's own definitions and options (its connection-pool.js), so "the same" means what etcd3 sends.
const proto = join(dirname(createRequire(import.meta.url).resolve('etcd3/package.json')), 'proto', 'rpc.proto');
const definitions = grpc.loadPackageDefinition(loadSync(proto, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true }));
const kv = (definitions['etcdserverpb'] as unknown as { KV: grpc.ServiceClientConstructor }).KV.service;
const txnCall = kv['Txn']!;
const etcd3Bytes = (req: TxnRequest): Buffer => txnCall.requestSerialize(req);
const asEtcdReads = (bytes: Buffer): unknown => txnCall.requestDeserialize(bytes);

const INT64_MAX = 2n ** 63n - 1n;
const int64Text = fc.oneof(
  fc.constantFrom('0', '1', '127', '128', '9007199254740993', String(INT64_MAX), '-1', String(-(2n ** 63n))),
  fc.bigInt({ min: 0n, max: INT64_MAX }).map(String),
  fc.nat().map(String),
);
const bytes = fc.uint8Array({ minLength: 0, maxLength: 40 }).map((a) => Buffer.from(a));
const key = fc.uint8Array({ minLength: 1, maxLength: 40 }).map((a) => Buffer.from(a));
const operand = fc.oneof(
  fc.record({ version: int64Text }),
  fc.record({ create_revision: fc.oneof(int64Text, fc.nat()) }),
  fc.record({ mod_revision: int64Text }),
  fc.record({ value: bytes }),
  fc.record({ lease: int64Text }),
  fc.constant({}),
);
const rangeEnd = fc.option(key, { nil: undefined }).map((end) => (end === undefined ? {} : { range_end: end }));
const compare: fc.Arbitrary<ICompare> = fc
  .tuple(
    key,
    fc.constantFrom('Equal', 'Greater', 'Less', 'NotEqual') as fc.Arbitrary<'Equal'>,
    fc.constantFrom('Version', 'Create', 'Mod', 'Value', 'Lease') as fc.Arbitrary<'Create'>,
    operand,
    rangeEnd,
  )
  .map(([k, result, target, operandOf, end]) => ({ key: k, result, target, ...operandOf, ...end }));
const op: fc.Arbitrary<TxnOp> = fc.oneof(
  fc.tuple(key, rangeEnd).map(([k, end]) => ({ request_range: { key: k, ...end } })),
  fc
    .tuple(key, bytes, fc.option(int64Text, { nil: undefined }))
    .map(([k, value, lease]) => ({ request_put: { key: k, value, ...(lease === undefined ? {} : { lease }) } })),
  fc.tuple(key, rangeEnd).map(([k, end]) => ({ request_delete_range: { key: k, ...end } })),
);
const request: fc.Arbitrary<TxnRequest> = fc.record({
  compare: fc.array(compare, { maxLength: 6 }),
  success: fc.array(op, { maxLength: 6 }),
  failure: fc.array(op, { maxLength: 6 }),
});

test('a transaction encodes to what etcd3 would send: the same message, field for field', () => {
  fc.assert(
    fc.property(request, (req) => {
      assert.deepEqual(asEtcdReads(encodeTxnRequest(req)), asEtcdReads(etcd3Bytes(req)));
    }),
    { numRuns: 500 },
  );
});

test('a registration batch as txn.ts builds it: the same message as etcd3 sends, 2 bytes shorter per compare', () => {
  const lease = '7587887766554433221';
  const req: TxnRequest = {
    compare: [
      { key: Buffer.from('/registrar/owner/o1'), target: 'Create', result: 'Equal', create_revision: '4242' },
      { key: Buffer.from('/search_PRE/10.0.0.1-86'), target: 'Create', result: 'Equal', create_revision: 0 },
      { key: Buffer.from('/search_PRE/10.0.0.2-86'), target: 'Lease', result: 'Equal', lease },
    ],
    success: [
      { request_put: { key: Buffer.from('/search_PRE/10.0.0.1-86'), value: Buffer.from('10.0.0.1:86'), lease } },
      { request_delete_range: { key: Buffer.from('/search_PRE/10.0.0.2-86') } },
    ],
    failure: [{ request_range: { key: Buffer.from('/registrar/owner/o1') } }, { request_range: { key: Buffer.from('/search_PRE/10.0.0.1-86') } }],
  };
  const ours = encodeTxnRequest(req);
  assert.deepEqual(asEtcdReads(ours), asEtcdReads(etcd3Bytes(req)));
  // etcd3 writes `result: Equal` (0) explicitly; proto3 omits it, and each such compare is 2 bytes shorter.
  assert.equal(etcd3Bytes(req).length - ours.length, 2 * 3);
});

test('a compare with two operands, or an unknown enum name, is refused before anything is sent', () => {
  const k = Buffer.from('/a');
  assert.throws(() => encodeTxnRequest({ compare: [{ key: k, target: 'Create', create_revision: 0, lease: '5' }], success: [], failure: [] }), /more than one operand/);
  assert.throws(() => encodeTxnRequest({ compare: [{ key: k, target: 'Nope' as 'Create' }], success: [], failure: [] }), /unknown compare target "Nope"/);
  assert.throws(() => encodeTxnRequest({ compare: [], success: [{ request_put: { key: k, value: k, lease: '1.5' } }], failure: [] }), /not an int64: "1.5"/);
  assert.throws(() => encodeTxnRequest({ compare: [], success: [{ request_put: { key: k, value: k, lease: String(2n ** 63n) } }], failure: [] }), /not an int64/);
});

const kvRecord = fc.record({
  key,
  value: bytes,
  lease: int64Text,
  mod_revision: int64Text,
  create_revision: int64Text,
  version: int64Text,
});
const header = fc.record({ cluster_id: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map(String), member_id: fc.constant('10276657743932975437'), revision: int64Text, raft_term: fc.constant('2') });
const responseOp = fc.oneof(
  fc.record({ response_range: fc.record({ header, kvs: fc.array(kvRecord, { maxLength: 2 }), more: fc.boolean(), count: int64Text }) }),
  fc.record({ response_put: fc.record({ header }) }),
  fc.record({ response_delete_range: fc.record({ header, deleted: int64Text }) }),
);
const response = fc.record({ header, succeeded: fc.boolean(), responses: fc.array(responseOp, { maxLength: 5 }) });

test("etcd's answer reads as etcd3 reads it: revision, success, and a failed transaction's range reads", () => {
  fc.assert(
    fc.property(response, (res) => {
      const bytesOnWire = txnCall.responseSerialize(res);
      const etcd3 = txnCall.responseDeserialize(bytesOnWire) as {
        header: { revision: string };
        succeeded: boolean;
        responses: { response_range?: { kvs: { key: Buffer; value: Buffer; lease: string; mod_revision: string; create_revision: string }[] } }[];
      };
      const ours = decodeTxnResponse(bytesOnWire);
      assert.equal(ours.succeeded, etcd3.succeeded);
      assert.equal(ours.revision, etcd3.header.revision);
      const expected = etcd3.succeeded
        ? []
        : etcd3.responses.map((r) => ({
            kvs: (r.response_range?.kvs ?? []).map(({ key: k, value, lease, mod_revision, create_revision }) => ({ key: k, value, lease, mod_revision, create_revision })),
          }));
      assert.deepEqual(ours.reads, expected);
    }),
    { numRuns: 500 },
  );
});

test('a truncated answer is a decode error, not a guess', () => {
  const res = { header: { revision: '9007199254740993' }, succeeded: false, responses: [{ response_range: { kvs: [{ key: Buffer.from('/a'), value: Buffer.from('v'), lease: '7', mod_revision: '3', create_revision: '2' }] } }] };
  const full: Buffer = txnCall.responseSerialize(res);
  assert.equal(decodeTxnResponse(full).revision, '9007199254740993');
  for (const cut of [1, 3, full.length - 1]) assert.throws(() => decodeTxnResponse(full.subarray(0, cut)), ProtobufDecodeError, `cut at ${cut}`);
});

test('int64 varints: every bit of a lease ID, negatives as ten bytes', () => {
  for (const text of ['0', '1', '300', '9007199254740993', String(INT64_MAX), '-1', String(-(2n ** 63n))]) {
    const encoded = int64Varint(text);
    const r = new Reader(Buffer.from(encoded));
    assert.equal(r.int64Text(), text);
    assert.equal(r.more(), false);
    if (text.startsWith('-')) assert.equal(encoded.length, 10);
  }
  assert.deepEqual([...int64Varint(300)], [0xac, 0x02]);
  assert.throws(() => int64Varint(1.5), /not an int64/);
  assert.throws(() => int64Varint('12a'), /not an int64/);
});
