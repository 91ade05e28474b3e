// The partial protobuf decoder (protobuf.ts) and the watch frame path of the transport, over
// bytes built by hand with the field numbers of core/v1 and meta/v1 generated.proto; the real
// API server's bytes are compared with JSON in protobuf.int.test.ts.
import assert from 'node:assert/strict';
import { describe, it, test, type TestContext } from 'node:test';
import type { V1Pod } from '@kubernetes/client-node';
import fc from 'fast-check';
import { pumpWatchBody } from './kube-http.ts';
import { PodSource, type PodEvent } from './pod-source.ts';
import {
  decodeList,
  decodeMetadataObject,
  decodePod,
  decodeWatchEvent,
  FrameSplitter,
  MAX_FRAME_BYTES,
  Reader,
} from './protobuf.ts';
import { toSlimPod } from './slim.ts';
import { capturingLogger, cut, fast, FakeApi, pb, pushedBody, until, type FakeWatch } from './testing.ts';

/** Unknown fields of every wire type, as a newer API server would add them. */
const junk = (field: number): Buffer[] => [pb.int(field, 300), pb.fixed64(field + 1), pb.bytes(field + 2, pb.message(pb.bytes(1, 'nested'), pb.int(2, 7))), pb.fixed32(field + 3)];

const time = (iso: string): Buffer => pb.message(pb.int(1, Date.parse(iso) / 1000), pb.int(2, 123_456_789));

const entries = (field: number, map: Readonly<Record<string, string>> | undefined): Buffer[] =>
  Object.entries(map ?? {}).map(([k, v]) => pb.bytes(field, pb.message(pb.bytes(1, k), pb.bytes(2, v))));

/**
 * A pod (JSON shape) as the API server would encode it, with unknown fields between the known
 * ones (generateName, generation, managedFields, container images, ...).
 */
function encodePod(pod: V1Pod): Buffer {
  const m = pod.metadata ?? {};
  const str = (field: number, v: string | undefined): Buffer[] => (v === undefined ? [] : [pb.bytes(field, v)]);
  const meta = pb.message(
    ...str(1, m.name),
    pb.bytes(2, 'generate-'),
    ...str(3, m.namespace),
    ...str(5, m.uid),
    ...str(6, m.resourceVersion),
    pb.int(7, 42),
    ...(m.creationTimestamp === undefined ? [] : [pb.bytes(8, time(String(m.creationTimestamp)))]),
    ...(m.deletionTimestamp === undefined ? [] : [pb.bytes(9, time(String(m.deletionTimestamp)))]),
    ...entries(11, m.labels),
    ...entries(12, m.annotations),
    pb.bytes(14, 'example.com/finalizer'),
    pb.bytes(17, pb.message(pb.bytes(1, 'kubectl'), pb.bytes(2, 'Update'))),
  );
  const containers = (pod.spec?.containers ?? []).map((c) =>
    pb.bytes(
      2,
      pb.message(
        pb.bytes(1, c.name),
        pb.bytes(2, 'example.invalid/image:1'),
        ...(c.ports ?? []).map((p) => pb.bytes(6, pb.message(...str(1, p.name), pb.int(2, 31000), pb.int(3, p.containerPort), pb.bytes(4, p.protocol ?? 'TCP')))),
      ),
    ),
  );
  const spec = pb.message(pb.bytes(1, pb.message(pb.bytes(1, 'volume'))), ...containers, pb.bytes(7, 'Always'), ...str(10, pod.spec?.nodeName), pb.int(11, pod.spec?.hostNetwork ? 1 : 0));
  const s = pod.status ?? {};
  const ips = (field: number, list: readonly { ip: string }[] | undefined): Buffer[] => (list ?? []).map((e) => pb.bytes(field, pb.message(pb.bytes(1, e.ip))));
  const status = pb.message(
    ...str(1, s.phase),
    ...(s.conditions ?? []).map((c) => pb.bytes(2, pb.message(pb.bytes(1, c.type), pb.bytes(2, c.status), pb.bytes(5, 'reason')))),
    ...str(5, s.hostIP),
    ...str(6, s.podIP),
    pb.bytes(8, pb.message(pb.bytes(1, 'app'), pb.int(5, 3))),
    ...ips(12, s.podIPs),
    ...ips(16, s.hostIPs),
  );
  return pb.message(...junk(20), pb.bytes(1, meta), pb.bytes(2, spec), pb.bytes(3, status), ...junk(30));
}

/** The decoded object is JSON-shaped: the mapping reads it as it reads a JSON pod. */
const slimOf = (object: unknown): ReturnType<typeof toSlimPod> => toSlimPod(object as V1Pod);

const decode = (bytes: Buffer): ReturnType<typeof decodePod> => decodePod(new Reader(bytes));

const basePod: V1Pod = {
  metadata: {
    name: 'web-1',
    namespace: 'shop',
    uid: 'u-1',
    resourceVersion: '77',
    creationTimestamp: '2026-01-02T03:04:05Z' as unknown as Date,
    labels: { app: 'web' },
    annotations: { 'etcd-registrar.io/service': 'web', note: 'héllo ✓' },
  },
  spec: {
    nodeName: 'node-a',
    containers: [
      { name: 'app', ports: [{ name: 'http', containerPort: 8080 }, { containerPort: 7000 }, { name: 'dns', containerPort: 53, protocol: 'UDP' }] },
      { name: 'side', ports: [{ name: 'http', containerPort: 8081 }] },
    ],
  },
  status: {
    phase: 'Running',
    podIP: '10.0.0.5',
    podIPs: [{ ip: '10.0.0.5' }, { ip: 'fd00::5' }],
    hostIP: '10.1.0.1',
    hostIPs: [{ ip: '10.1.0.1' }, { ip: 'fd00:1::1' }],
    conditions: [{ type: 'Initialized', status: 'True' }, { type: 'Ready', status: 'True' }],
  },
};

describe('Reader', () => {
  it('reads varints of 1 to 8 bytes, exactly up to 2^53', () => {
    for (const n of [0, 1, 127, 128, 300, 16_383, 16_384, 2 ** 31 - 1, 2 ** 32, 2 ** 40 + 3, Number.MAX_SAFE_INTEGER]) {
      const r = new Reader(pb.varint(n));
      assert.equal(r.varint(), n);
      assert.equal(r.more(), false);
    }
    fc.assert(fc.property(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), (n) => new Reader(pb.varint(n)).varint() === n));
  });

  it('a truncated or over-long varint is an error, not a guess', () => {
    assert.throws(() => new Reader(Buffer.from([0x80, 0x80])).varint(), { name: 'ProtobufDecodeError', message: /truncated varint at byte 0 of 2/ });
    assert.throws(() => new Reader(Buffer.alloc(11, 0xff)).varint(), /varint longer than 10 bytes/);
    // The message ends before the buffer does: the varint may not read past it.
    assert.throws(() => new Reader(Buffer.from([0x80, 0x01]), 0, 1).varint(), /truncated varint/);
  });

  it('skips every wire type; an unknown wire type (groups) is an error', () => {
    const r = new Reader(pb.message(...junk(5)));
    while (r.more()) r.skip(r.varint() & 7);
    assert.equal(r.pos, r.end);
    assert.throws(() => new Reader(Buffer.from([(9 << 3) | 3])).skip(3), /unsupported wire type 3/);
  });
});

describe('decodePod', () => {
  it('gives the fields the mapping reads, in the JSON shape, and nothing else', () => {
    const decoded = decode(encodePod(basePod));
    assert.deepEqual(decoded, {
      metadata: {
        name: 'web-1',
        namespace: 'shop',
        uid: 'u-1',
        resourceVersion: '77',
        creationTimestamp: '2026-01-02T03:04:05Z',
        labels: { app: 'web' },
        annotations: { 'etcd-registrar.io/service': 'web', note: 'héllo ✓' },
      },
      spec: {
        containers: [{ ports: [{ name: 'http', containerPort: 8080 }, { containerPort: 7000 }, { name: 'dns', containerPort: 53 }] }, { ports: [{ name: 'http', containerPort: 8081 }] }],
        nodeName: 'node-a',
      },
      status: {
        phase: 'Running',
        conditions: [{ type: 'Initialized', status: 'True' }, { type: 'Ready', status: 'True' }],
        hostIP: '10.1.0.1',
        podIP: '10.0.0.5',
        podIPs: [{ ip: '10.0.0.5' }, { ip: 'fd00::5' }],
        hostIPs: [{ ip: '10.1.0.1' }, { ip: 'fd00:1::1' }],
      },
    });
    assert.deepEqual(slimOf(decoded), toSlimPod(basePod));
  });

  it('a deletionTimestamp makes the pod terminating; whole seconds like JSON (nanos dropped)', () => {
    const pod: V1Pod = { ...basePod, metadata: { ...basePod.metadata, deletionTimestamp: '2026-03-04T05:06:07Z' as unknown as Date } };
    const decoded = decode(encodePod(pod));
    assert.equal(decoded.metadata?.deletionTimestamp, '2026-03-04T05:06:07Z');
    assert.equal(slimOf(decoded)?.terminating, true);
  });

  it('a "__proto__" label is an own property, as JSON.parse makes it', () => {
    const decoded = decode(encodePod({ ...basePod, metadata: { ...basePod.metadata, labels: { ['__proto__']: 'x', app: 'web' } } }));
    const labels = decoded.metadata?.labels ?? {};
    assert.equal(Object.getPrototypeOf(labels), Object.prototype);
    assert.ok(Object.hasOwn(labels, '__proto__'));
    const json = JSON.parse('{"metadata":{"name":"n","namespace":"ns","uid":"u","labels":{"__proto__":"x","app":"web"}}}') as unknown;
    assert.deepEqual(slimOf(decoded)?.labels, slimOf(json)?.labels);
  });

  it('property: any pod gives the same slim record decoded from protobuf as from JSON', () => {
    const name = fc.stringMatching(/^[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?$/);
    const text = fc.string({ maxLength: 40, unit: 'grapheme' });
    const ip = fc.oneof(fc.ipV4(), fc.ipV6());
    const port = fc.record({ name: fc.option(name, { nil: undefined }), containerPort: fc.integer({ min: 1, max: 65535 }) }, { requiredKeys: ['containerPort'] });
    const pod = fc.record({
      name,
      namespace: name,
      uid: fc.uuid(),
      rv: fc.nat().map(String),
      created: fc.integer({ min: 0, max: 4_000_000_000 }).map((s) => new Date(s * 1000).toISOString().replace('.000Z', 'Z')),
      deleting: fc.boolean(),
      labels: fc.dictionary(name, text, { maxKeys: 4 }),
      annotations: fc.dictionary(name, text, { maxKeys: 4 }),
      nodeName: fc.option(name, { nil: undefined }),
      containers: fc.array(fc.array(port, { maxLength: 4 }), { maxLength: 3 }),
      phase: fc.constantFrom(undefined, 'Pending', 'Running', 'Succeeded', 'Failed'),
      podIP: fc.option(ip, { nil: undefined }),
      podIPs: fc.array(ip, { maxLength: 3 }),
      hostIP: fc.option(ip, { nil: undefined }),
      hostIPs: fc.array(ip, { maxLength: 2 }),
      conditions: fc.array(fc.record({ type: fc.constantFrom('Ready', 'Initialized', 'ContainersReady'), status: fc.constantFrom('True', 'False', 'Unknown') }), { maxLength: 4 }),
    });
    fc.assert(
      fc.property(pod, (p) => {
        const json: V1Pod = JSON.parse(
          JSON.stringify({
            metadata: { name: p.name, namespace: p.namespace, uid: p.uid, resourceVersion: p.rv, creationTimestamp: p.created, deletionTimestamp: p.deleting ? p.created : undefined, labels: p.labels, annotations: p.annotations },
            spec: { nodeName: p.nodeName, containers: p.containers.map((ports, i) => ({ name: `c${i}`, ports })) },
            status: { phase: p.phase, podIP: p.podIP, podIPs: p.podIPs.map((x) => ({ ip: x })), hostIP: p.hostIP, hostIPs: p.hostIPs.map((x) => ({ ip: x })), conditions: p.conditions },
          }),
        ) as V1Pod;
        assert.deepEqual(slimOf(decode(encodePod(json))), toSlimPod(json));
      }),
      { numRuns: 300 },
    );
  });

  it('a known field with the wrong wire type, or a length past its message, is an error', () => {
    // metadata (field 1) sent as a varint.
    assert.throws(() => decode(pb.int(1, 5)), { name: 'ProtobufDecodeError', message: /field 1 has wire type 0, expected 2/ });
    // containerPort (field 3) sent as a string.
    const badPort = pb.bytes(2, pb.bytes(2, pb.bytes(6, pb.bytes(3, '8080'))));
    assert.throws(() => decode(badPort), /field 3 has wire type 2, expected 0/);
    // metadata claims 50 bytes, 3 follow.
    assert.throws(() => decode(Buffer.from([0x0a, 50, 0x0a, 1, 0x61])), /field of 50 bytes at byte 2 overruns its message/);
    // A name that runs past the end of its metadata, though not past the buffer.
    const meta = pb.bytes(1, Buffer.from([0x0a, 10, 0x61]));
    assert.throws(() => decode(Buffer.concat([meta, Buffer.alloc(20)])), /overruns its message/);
  });
});

describe('envelope, list, watch event', () => {
  it('decodes a list: ListMeta resourceVersion and continue, items, unknown fields skipped', () => {
    const list = pb.envelope('PodList', pb.message(pb.bytes(1, pb.message(pb.bytes(1, 'self'), pb.bytes(2, '900'), pb.bytes(3, 'next-token'), pb.int(4, 12))), pb.bytes(2, encodePod(basePod)), pb.bytes(2, encodePod({ ...basePod, metadata: { ...basePod.metadata, uid: 'u-2' } })), ...junk(40)));
    const decoded = decodeList(list, decodePod);
    assert.deepEqual(decoded.metadata, { resourceVersion: '900', continue: 'next-token' });
    assert.deepEqual(decoded.items.map((i) => (i as { metadata: { uid: string } }).metadata.uid), ['u-1', 'u-2']);
  });

  it('an envelope without the magic, with a content encoding, or of the wrong kind is an error', () => {
    assert.throws(() => decodeList(Buffer.from('{"kind":"PodList"}'), decodePod), /"k8s\\0" prefix is missing/);
    assert.throws(() => decodeList(Buffer.from([0x6b, 0x38]), decodePod), /prefix is missing \(2 bytes\)/);
    assert.throws(() => decodeList(pb.envelope('PodList', Buffer.alloc(0), [pb.bytes(3, 'gzip')]), decodePod), /unsupported content encoding "gzip"/);
    assert.throws(() => decodeList(pb.envelope('PodList', Buffer.alloc(0), [pb.bytes(4, 'application/json')]), decodePod), /unexpected content type "application\/json"/);
    assert.throws(() => decodeList(pb.envelope('Pod', encodePod(basePod)), decodePod), /expected a list, got Pod/);
  });

  it('decodes a namespace or node to its metadata only', () => {
    const ns = pb.message(pb.bytes(1, pb.message(pb.bytes(1, 'shop'), pb.bytes(5, 'uid-ns'), ...entries(12, { grants: 'web' }))), pb.bytes(2, pb.bytes(1, 'kubernetes')), pb.bytes(3, pb.bytes(1, 'Active')));
    assert.deepEqual(decodeMetadataObject(new Reader(ns)), { metadata: { name: 'shop', uid: 'uid-ns', annotations: { grants: 'web' } } });
  });

  it('decodes WatchEvent frames: objects, bookmarks, an ERROR Status', () => {
    const frame = (type: string, kind: string, raw: Buffer): Buffer => pb.frame(type, kind, raw).subarray(4);
    const added = decodeWatchEvent(frame('ADDED', 'Pod', encodePod(basePod)), decodePod);
    assert.equal(added.type, 'ADDED');
    assert.deepEqual(slimOf(added.object), toSlimPod(basePod));
    const bookmark = decodeWatchEvent(frame('BOOKMARK', 'Pod', pb.bytes(1, pb.bytes(6, '1234'))), decodePod);
    assert.deepEqual(bookmark, { type: 'BOOKMARK', object: { metadata: { resourceVersion: '1234' } } });
    const status = pb.message(pb.bytes(1, pb.bytes(2, '10')), pb.bytes(2, 'Failure'), pb.bytes(3, 'too old resource version: 1 (900)'), pb.bytes(4, 'Expired'), pb.bytes(5, pb.bytes(1, 'x')), pb.int(6, 410));
    assert.deepEqual(decodeWatchEvent(frame('ERROR', 'Status', status), decodePod), {
      type: 'ERROR',
      object: { kind: 'Status', status: 'Failure', message: 'too old resource version: 1 (900)', reason: 'Expired', code: 410 },
    });
    assert.throws(() => decodeWatchEvent(pb.bytes(2, pb.bytes(1, pb.envelope('Pod', encodePod(basePod)))), decodePod), /watch event without a type/);
    assert.throws(() => decodeWatchEvent(pb.bytes(1, 'ADDED'), decodePod), /ADDED watch event without an object/);
  });
});

describe('FrameSplitter', () => {
  const frames = [pb.frame('ADDED', 'Pod', encodePod(basePod)), pb.frame('BOOKMARK', 'Pod', pb.bytes(1, pb.bytes(6, '9'))), pb.frame('DELETED', 'Pod', encodePod(basePod))];
  const stream = Buffer.concat(frames);
  const split = (chunks: readonly Buffer[]): Buffer[] => {
    const out: Buffer[] = [];
    const splitter = new FrameSplitter((f) => out.push(Buffer.from(f)));
    for (const c of chunks) splitter.push(c);
    splitter.end();
    return out;
  };

  it('property: frames come out whole wherever the chunks are cut', () => {
    const expected = frames.map((f) => f.subarray(4));
    fc.assert(
      fc.property(fc.array(fc.nat({ max: stream.length }), { maxLength: 12 }), (cuts) => {
        assert.deepEqual(split(cut(stream, cuts)), expected);
      }),
    );
    assert.deepEqual(split([...stream].map((b) => Buffer.of(b))), expected, 'one byte at a time');
  });

  it('a stream that ends inside a frame, or its length prefix, is an error', () => {
    for (const at of [2, 4, 100, frames[0]!.length - 1]) {
      const splitter = new FrameSplitter(() => undefined);
      splitter.push(stream.subarray(0, at));
      assert.throws(() => splitter.end(), { name: 'ProtobufDecodeError', message: /watch stream ended inside a .*truncated/ }, `cut at ${at}`);
    }
  });

  it('a length beyond the limit is refused at once (a corrupt prefix)', () => {
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(MAX_FRAME_BYTES + 1);
    assert.throws(() => new FrameSplitter(() => undefined).push(prefix), /exceeds the 67108864-byte limit/);
  });
});

describe('a malformed protobuf watch frame ends the watch, the reflector relists', () => {
  const podJson = (uid: string, name: string): V1Pod => ({ ...basePod, metadata: { ...basePod.metadata, uid, name } });

  /**
   * The in-memory API server for lists; each watch reads a byte body the test pushes through
   * the transport's own watch body reader (pumpWatchBody: frame splitter + decoder).
   */
  class ByteWatchApi extends FakeApi<V1Pod> {
    bodies: ReturnType<typeof pushedBody>[] = [];
    override async watch(req: Parameters<FakeApi['watch']>[0], onEvent: FakeWatch['onEvent'], onDone: FakeWatch['onDone']) {
      this.watchCalls.push({ namespace: req.namespace, resourceVersion: req.resourceVersion, timeoutSeconds: req.timeoutSeconds });
      const body = pushedBody();
      this.bodies.push(body);
      const controller = new AbortController();
      pumpWatchBody(body.body, decodePod, controller.signal, () => undefined, onEvent).then(onDone, onDone);
      return { abort: () => controller.abort() };
    }
  }

  /** A started PodSource over one listed pod, its first watch open. */
  async function watching(t: TestContext): Promise<{ api: ByteWatchApi; source: PodSource; lines: Record<string, unknown>[]; events: PodEvent[] }> {
    const api = new ByteWatchApi();
    api.put(podJson('u-1', 'listed'));
    const { logger, lines } = capturingLogger();
    const source = new PodSource({ namespaces: [], logger, transport: api, backoff: fast });
    t.after(() => source.stop());
    const events: PodEvent[] = [];
    source.onChange((e) => events.push(e));
    await source.start();
    await until('the first watch', () => api.bodies.length === 1);
    assert.equal(api.listCalls.length, 1);
    return { api, source, lines, events };
  }

  test('events before the bad frame are applied; then one clear log line, a relist, a new watch', async (t) => {
    const { api, source, lines, events } = await watching(t);

    const good = pb.frame('ADDED', 'Pod', encodePod(podJson('u-2', 'watched')));
    const bad = pb.frame('MODIFIED', 'Pod', Buffer.from([0x0a, 0x7f, 0x01]));
    // The good frame and the first bytes of the bad one arrive in one chunk.
    api.bodies[0]!.push(Buffer.concat([good, bad.subarray(0, 5)]));
    await until('the watched pod', () => source.list().some((p) => p.name === 'watched'));
    api.bodies[0]!.push(bad.subarray(5));

    // The relist lists what the API server holds (only "listed"): "watched" goes away.
    await until('a relist and a second watch', () => api.listCalls.length === 2 && api.bodies.length === 2, 3000);
    const failed = lines.find((l) => l['msg'] === 'pod watch failed; relisting');
    assert.ok(failed, JSON.stringify(lines.map((l) => l['msg'])));
    assert.match(String(failed['err']), /^ProtobufDecodeError: field of 127 bytes at byte \d+ overruns its message/);
    assert.equal(source.stats().watchErrors, 1);
    assert.deepEqual(source.list().map((p) => p.name), ['listed']);
    assert.deepEqual(events.map((e) => `${e.type} ${e.pod.name}`), ['upsert listed', 'upsert watched', 'delete watched']);
  });

  test('a watch body cut inside a frame is an error (relist), not a clean close', async (t) => {
    const { api, source, lines } = await watching(t);
    api.bodies[0]!.push(pb.frame('ADDED', 'Pod', encodePod(podJson('u-3', 'half'))).subarray(0, 40));
    api.bodies[0]!.end();
    await until('a relist', () => api.listCalls.length === 2, 3000);
    const failed = lines.find((l) => l['msg'] === 'pod watch failed; relisting');
    assert.match(String(failed?.['err']), /ProtobufDecodeError: watch stream ended inside a \d+-byte frame \(40 bytes received, truncated\)/);
    assert.ok(!source.list().some((p) => p.name === 'half'), 'no half-decoded pod');
  });
});
