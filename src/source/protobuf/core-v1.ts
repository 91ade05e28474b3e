// The schemas of the objects the kinds read: meta/v1 ObjectMeta and core/v1 Pod, Node and
// Namespace, each a table of the fields the kinds' valueOf reads (slim.ts, value-source.ts).
// Field numbers are those of k8s.io/api core/v1 and k8s.io/apimachinery pkg/apis/meta/v1
// generated.proto (docs/decisions/0022-protobuf-intake.md lists them).
import { append, bytesField, messageFields, readFields, readMapEntry, readMessage, varintField, type Reader } from '../../protobuf/wire.ts';

// --- meta/v1 -------------------------------------------------------------------------------------

/** meta/v1 Time {seconds = 1, nanos = 2}. */
const TIME = messageFields<{ seconds: number }>({ 1: varintField((r, t) => (t.seconds = r.varint())) });

/** Recent times as text by their seconds: the pods of a rollout share a handful of them. */
const timeTexts = new Map<number, string>();
const TIME_TEXTS_MAX = 1024;

/** The meta/v1 Time that comes next, as RFC 3339 in whole seconds, the JSON form. */
function time(r: Reader): string {
  const { seconds } = readMessage(r, TIME, { seconds: 0 });
  const known = timeTexts.get(seconds);
  if (known !== undefined) return known;
  // JSON carries whole seconds (RFC 3339); nanos are dropped so both content types agree.
  const text = new Date(seconds * 1000).toISOString().replace('.000Z', 'Z');
  // Bounded: a relist of old pods must not grow it for ever.
  if (timeTexts.size >= TIME_TEXTS_MAX) timeTexts.clear();
  timeTexts.set(seconds, text);
  return text;
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

/** meta/v1 ObjectMeta. */
const OBJECT_META = messageFields<DecodedMeta>({
  1: bytesField((r, m) => (m.name = r.string())),
  3: bytesField((r, m) => (m.namespace = r.sharedString())),
  5: bytesField((r, m) => (m.uid = r.string())),
  6: bytesField((r, m) => (m.resourceVersion = r.string())),
  8: bytesField((r, m) => (m.creationTimestamp = time(r))),
  9: bytesField((r, m) => (m.deletionTimestamp = time(r))),
  11: bytesField((r, m) => readMapEntry(r, (m.labels ??= {}))),
  12: bytesField((r, m) => readMapEntry(r, (m.annotations ??= {}))),
});

/** The ObjectMeta that comes next. */
const objectMeta = (r: Reader): DecodedMeta => readMessage(r, OBJECT_META, {});

// --- core/v1 -------------------------------------------------------------------------------------

/** An object of a kind that only needs its metadata (Node, Namespace): metadata = 1. */
const METADATA_OBJECT = messageFields<{ metadata?: DecodedMeta }>({ 1: bytesField((r, o) => (o.metadata = objectMeta(r))) });

export const decodeMetadataObject = (r: Reader): { metadata?: DecodedMeta } => readFields(r, METADATA_OBJECT, {});

interface DecodedPort {
  name?: string;
  containerPort?: number;
}

/** core/v1 ContainerPort. */
const CONTAINER_PORT = messageFields<DecodedPort>({
  1: bytesField((r, p) => (p.name = r.sharedString())),
  3: varintField((r, p) => (p.containerPort = r.varint() | 0)),
});

interface DecodedContainer {
  ports?: DecodedPort[];
}

/** core/v1 Container: nothing but its ports is read. */
const CONTAINER = messageFields<DecodedContainer>({ 6: bytesField((r, c) => (c.ports = append(c.ports, readMessage(r, CONTAINER_PORT, {})))) });

interface DecodedPodSpec {
  containers?: DecodedContainer[];
  nodeName?: string;
}

/** core/v1 PodSpec. */
const POD_SPEC = messageFields<DecodedPodSpec>({
  2: bytesField((r, s) => (s.containers = append(s.containers, readMessage(r, CONTAINER, {})))),
  10: bytesField((r, s) => (s.nodeName = r.sharedString())),
});

interface DecodedCondition {
  type?: string;
  status?: string;
}

/** core/v1 PodCondition. */
const POD_CONDITION = messageFields<DecodedCondition>({
  // A handful of values ('Ready', 'True', ...) in every pod event: one copy each.
  1: bytesField((r, c) => (c.type = r.sharedString())),
  2: bytesField((r, c) => (c.status = r.sharedString())),
});

interface DecodedIP {
  ip?: string;
}

/** core/v1 PodIP {ip = 1}. */
const POD_IP = messageFields<DecodedIP>({ 1: bytesField((r, e) => (e.ip = r.string())) });
/** core/v1 HostIP {ip = 1}: shared by the pods of its node. */
const HOST_IP = messageFields<DecodedIP>({ 1: bytesField((r, e) => (e.ip = r.sharedString())) });

interface DecodedPodStatus {
  phase?: string;
  conditions?: DecodedCondition[];
  hostIP?: string;
  podIP?: string;
  podIPs?: DecodedIP[];
  hostIPs?: DecodedIP[];
}

/** core/v1 PodStatus. */
const POD_STATUS = messageFields<DecodedPodStatus>({
  1: bytesField((r, s) => (s.phase = r.sharedString())),
  2: bytesField((r, s) => (s.conditions = append(s.conditions, readMessage(r, POD_CONDITION, {})))),
  5: bytesField((r, s) => (s.hostIP = r.sharedString())),
  6: bytesField((r, s) => (s.podIP = r.string())),
  12: bytesField((r, s) => (s.podIPs = append(s.podIPs, readMessage(r, POD_IP, {})))),
  16: bytesField((r, s) => (s.hostIPs = append(s.hostIPs, readMessage(r, HOST_IP, {})))),
});

interface DecodedPod {
  metadata?: DecodedMeta;
  spec?: DecodedPodSpec;
  status?: DecodedPodStatus;
}

/** core/v1 Pod. */
const POD = messageFields<DecodedPod>({
  1: bytesField((r, p) => (p.metadata = objectMeta(r))),
  2: bytesField((r, p) => (p.spec = readMessage(r, POD_SPEC, {}))),
  3: bytesField((r, p) => (p.status = readMessage(r, POD_STATUS, {}))),
});

export const decodePod = (r: Reader): DecodedPod => readFields(r, POD, {});
