// What wraps the objects of a body or a watch frame: the "k8s\0" magic and runtime.Unknown
// envelope, meta/v1 lists and Status, and meta/v1 WatchEvent. Field numbers are those of
// k8s.io/apimachinery pkg/runtime and pkg/apis/meta/v1 generated.proto.
import { bytesField, messageFields, ProtobufDecodeError, readFields, readMessage, Reader, varintField } from '../../protobuf/wire.ts';

/** Decodes one object of a kind (a Pod, a Node) from its message bytes. */
export type ObjectDecoder = (r: Reader) => unknown;

/** The 4 bytes before every protobuf-encoded object of the API server ("k8s\0"). */
const MAGIC = [0x6b, 0x38, 0x73, 0x00] as const;

export interface Envelope {
  readonly kind: string;
  readonly apiVersion: string;
  /** The object's message bytes (`raw`). */
  readonly raw: Reader;
}

interface UnknownFields {
  kind: string;
  apiVersion: string;
  raw?: Reader;
  contentEncoding: string;
  contentType: string;
}

/** runtime.TypeMeta, read into the Unknown that holds it. */
const TYPE_META = messageFields<UnknownFields>({
  1: bytesField((r, u) => (u.apiVersion = r.string())),
  2: bytesField((r, u) => (u.kind = r.string())),
});

/** runtime.Unknown. */
const UNKNOWN = messageFields<UnknownFields>({
  1: bytesField((r, u) => readMessage(r, TYPE_META, u)),
  2: bytesField((r, u) => (u.raw = r.message())),
  3: bytesField((r, u) => (u.contentEncoding = r.string())),
  4: bytesField((r, u) => (u.contentType = r.string())),
});

function unknown(r: Reader): Envelope {
  const { kind, apiVersion, raw, contentEncoding, contentType } = readFields<UnknownFields>(r, UNKNOWN, { kind: '', apiVersion: '', contentEncoding: '', contentType: '' });
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

export interface DecodedStatus {
  kind: 'Status';
  status?: string;
  message?: string;
  reason?: string;
  code?: number;
}

/** meta/v1 Status (an in-stream ERROR, an error body). */
const STATUS = messageFields<DecodedStatus>({
  2: bytesField((r, s) => (s.status = r.string())),
  3: bytesField((r, s) => (s.message = r.string())),
  4: bytesField((r, s) => (s.reason = r.string())),
  6: varintField((r, s) => (s.code = r.varint() | 0)),
});

export const decodeStatus = (r: Reader): DecodedStatus => readFields<DecodedStatus>(r, STATUS, { kind: 'Status' });

interface DecodedListMeta {
  resourceVersion?: string;
  continue?: string;
}

/** meta/v1 ListMeta. */
const LIST_META = messageFields<DecodedListMeta>({
  2: bytesField((r, m) => (m.resourceVersion = r.string())),
  3: bytesField((r, m) => (m.continue = r.string())),
});

interface ListFields {
  readonly item: ObjectDecoder;
  readonly items: unknown[];
  metadata: DecodedListMeta;
}

/** A list (PodList, NodeList, ...). */
const LIST = messageFields<ListFields>({
  1: bytesField((r, l) => (l.metadata = readMessage(r, LIST_META, {}))),
  2: bytesField((r, l) => l.items.push(l.item(r.message()))),
});

/** A list body: its items decoded with `item`, and its ListMeta. */
export function decodeList(body: Buffer, item: ObjectDecoder): { items: unknown[]; metadata: DecodedListMeta } {
  const env = decodeEnvelope(new Reader(body));
  if (!env.kind.endsWith('List')) throw new ProtobufDecodeError(`expected a list, got ${env.kind || 'an object without a kind'}`);
  const { items, metadata } = readFields<ListFields>(env.raw, LIST, { item, items: [], metadata: {} });
  return { items, metadata };
}

/** An object in an envelope: a Status (ERROR events, error bodies) or the kind's object. */
export function decodeObject(r: Reader, item: ObjectDecoder): unknown {
  const env = decodeEnvelope(r);
  return env.kind === 'Status' ? decodeStatus(env.raw) : item(env.raw);
}

interface ObjectFields {
  readonly item: ObjectDecoder;
  object?: unknown;
}

/** runtime.RawExtension: the enveloped object's bytes. */
const RAW_EXTENSION = messageFields<ObjectFields>({ 1: bytesField((r, e) => (e.object = decodeObject(r.message(), e.item))) });

interface WatchEventFields extends ObjectFields {
  type: string;
}

/** meta/v1 WatchEvent. */
const WATCH_EVENT = messageFields<WatchEventFields>({
  1: bytesField((r, e) => (e.type = r.string())),
  2: bytesField((r, e) => (e.object = readMessage<ObjectFields>(r, RAW_EXTENSION, { item: e.item }).object)),
});

/** One watch frame: a WatchEvent whose object is decoded with `item` (or is a Status). */
export function decodeWatchEvent(frame: Buffer, item: ObjectDecoder): { type: string; object: unknown } {
  const { type, object } = readFields<WatchEventFields>(new Reader(frame), WATCH_EVENT, { item, type: '' });
  if (type === '') throw new ProtobufDecodeError(`watch event without a type (${frame.length} bytes)`);
  if (object === undefined) throw new ProtobufDecodeError(`${type} watch event without an object`);
  return { type, object };
}
