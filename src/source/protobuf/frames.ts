// The framing of a protobuf watch stream: each WatchEvent comes as a 4-byte big-endian length,
// then that many bytes. The frames are decoded by envelope.ts.
import { ProtobufDecodeError } from '../../protobuf/wire.ts';

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
