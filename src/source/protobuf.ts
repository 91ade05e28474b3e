// A partial decoder of the Kubernetes protobuf wire format (application/vnd.kubernetes.protobuf):
// only the fields the kinds' valueOf reads (slim.ts, value-source.ts) are decoded, every other
// field is skipped by its wire type and never materialised. The objects produced have the shape
// of the JSON the API server sends (timestamps as RFC 3339 strings, maps as plain records, lists
// as arrays), so one mapping (toSlimPod, the value sources) serves both content types.
//
// protobuf/wire.ts reads the wire format, protobuf/envelope.ts the envelope, lists, Status and
// watch events, protobuf/frames.ts splits a watch stream into frames, protobuf/core-v1.ts holds
// the schemas of the objects (docs/decisions/0022-protobuf-intake.md lists their field numbers).
export { decodeMetadataObject, decodePod, type DecodedMeta } from './protobuf/core-v1.ts';
export { decodeEnvelope, decodeList, decodeObject, decodeStatus, decodeWatchEvent, type Envelope, type ObjectDecoder } from './protobuf/envelope.ts';
export { FrameSplitter, MAX_FRAME_BYTES } from './protobuf/frames.ts';
export { ProtobufDecodeError, Reader } from '../protobuf/wire.ts';
