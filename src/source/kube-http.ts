// Raw list and watch requests to the API server, returning plain decoded objects, and the
// ListerWatcher the reflector (reflector.ts) runs on. The content type is chosen here (JSON, or
// protobuf decoded partially by protobuf.ts into objects of the same shape): the reflector and
// the kinds only ever see decoded objects.
//
// Why not client-node's CoreV1Api and Watch: measured in docs/intake.md (bench/intake.ts),
// CoreV1Api's ObjectSerializer turns every listed pod into typed model objects (Date fields and
// all) that we throw away at once for a slim record, and Watch pipes each event through undici
// fetch -> web stream -> Node stream -> readline before JSON.parse. Here a list page is one
// JSON.parse of the body and a watch splits the byte stream on newlines itself.
//
// Authentication and TLS come from the KubeAccess (kube-access.ts): per request the headers
// (a token re-read as it rotates) and the agent: lists and Event POSTs share a connection pool
// (rotated credentials get a new pool), each watch gets a connection of its own.
import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { request as httpsRequest } from 'node:https';
import { http } from '../node-http.ts';
import type { KubeAccess } from './kube-access.ts';
import { decodeList, decodeMetadataObject, decodeObject, decodePod, decodeStatus, decodeWatchEvent, FrameSplitter, Reader, type ObjectDecoder } from './protobuf.ts';

/**
 * A non-2xx answer. `statusCode` is what statusCodeOf() reads (410 = Gone, 403, ...); `code` is
 * the same number, where client-node's ApiException had it (the event recorder's log line).
 */
export class KubeHttpError extends Error {
  readonly statusCode: number;
  readonly code: number;
  /** The Status object the API server sent, if the body was one. */
  readonly status: unknown;
  constructor(statusCode: number, message: string, status: unknown) {
    super(message);
    this.name = 'KubeHttpError';
    this.statusCode = statusCode;
    this.code = statusCode;
    this.status = status;
  }
}

/** HTTP status of an error (KubeHttpError.statusCode; client-node's ApiException.code). */
export function statusCodeOf(err: unknown): number | undefined {
  if (err === null || typeof err !== 'object') return undefined;
  const e = err as { code?: unknown; statusCode?: unknown };
  if (typeof e.statusCode === 'number') return e.statusCode;
  if (typeof e.code === 'number') return e.code;
  return undefined;
}

/** One line for a log: HTTP status, message and cause of an Error, or an in-stream Status. */
export function describeError(err: unknown): string {
  if (err instanceof Error) {
    const code = statusCodeOf(err);
    const text = code === undefined ? `${err.name}: ${err.message}` : `HTTP ${code}: ${err.message}`;
    // An AbortError keeps its reason (a TimeoutError) in `cause`, as fetch's "fetch failed" (client-node's
    // typed API) keeps ECONNREFUSED or a certificate error.
    const cause = (err as { cause?: unknown }).cause;
    return cause instanceof Error ? `${text} (${cause.message})` : text;
  }
  if (err !== null && typeof err === 'object') {
    const s = err as { code?: unknown; message?: unknown; reason?: unknown };
    return `status ${String(s.code)} ${String(s.reason ?? '')}: ${String(s.message ?? '')}`;
  }
  return String(err);
}

export interface RawListPage {
  readonly items: readonly unknown[];
  readonly resourceVersion: string;
  readonly continueToken: string | undefined;
}

export type Query = Readonly<Record<string, string | number | boolean | undefined>>;

interface Response {
  readonly status: number;
  /** The Content-Type header ('' when absent). */
  readonly contentType: string;
  readonly body: Readable;
  /** The request's: after it aborted, its reason says why a read failed. */
  readonly signal: AbortSignal;
  /** The request is over (body read or abandoned): a watch's own connection closes. */
  readonly done: () => void;
}

/** How list and watch bodies are asked for and decoded (--kube-content-type). */
export type KubeContentType = 'json' | 'protobuf';

const PROTOBUF = 'application/vnd.kubernetes.protobuf';

/**
 * What to ask for: protobuf first with JSON as the server's fallback (a kind it cannot encode as
 * protobuf, e.g. a custom resource, answers JSON), as client-go does for built-in kinds. The
 * body is decoded by the Content-Type of the answer, never by what was asked.
 */
function acceptOf(decoder: ObjectDecoder | undefined, watch: boolean): string {
  if (decoder === undefined) return 'application/json';
  return `${PROTOBUF}${watch ? ';type=watch' : ''}, application/json`;
}

function isProtobuf(contentType: string): boolean {
  return contentType.toLowerCase().startsWith(PROTOBUF);
}

/**
 * Splits a byte stream into lines ('\n', a '\r' before it is dropped) and hands each non-empty
 * line to `onLine` as a string. Lines are cut on bytes and decoded whole, so a multi-byte UTF-8
 * character split across chunks decodes correctly ('\n' never occurs inside one).
 */
export class LineSplitter {
  readonly #onLine: (line: string) => void;
  /** Bytes of an unfinished line, from earlier chunks. */
  #pending: Buffer[] = [];

  constructor(onLine: (line: string) => void) {
    this.#onLine = onLine;
  }

  push(chunk: Uint8Array): void {
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    let start = 0;
    for (let nl = buf.indexOf(10, start); nl !== -1; nl = buf.indexOf(10, start)) {
      if (this.#pending.length === 0) {
        this.#emit(buf, start, nl);
      } else {
        this.#pending.push(buf.subarray(start, nl));
        const line = Buffer.concat(this.#pending);
        this.#pending = [];
        this.#emit(line, 0, line.length);
      }
      start = nl + 1;
    }
    // Copy: the caller may reuse the chunk's memory.
    if (start < buf.length) this.#pending.push(Buffer.from(buf.subarray(start)));
  }

  /** The stream ended: a last line without a newline still counts. */
  end(): void {
    if (this.#pending.length === 0) return;
    const line = Buffer.concat(this.#pending);
    this.#pending = [];
    this.#emit(line, 0, line.length);
  }

  #emit(buf: Buffer, start: number, end: number): void {
    if (end > start && buf[end - 1] === 13) end--;
    if (end <= start) return;
    const line = buf.toString('utf8', start, end);
    if (line.trim() !== '') this.#onLine(line);
  }
}

function urlOf(kube: KubeAccess, path: string, query: Query): URL {
  const url = new URL(kube.server + path);
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined) url.searchParams.set(key, String(value));
  }
  return url;
}

/**
 * One request with the access's credentials and agent; resolves once the headers arrived. After
 * `signal` aborted, the error is its reason (a TimeoutError, say) rather than the socket's echo.
 *
 * Every request is HTTP/1.1, and a watch has a connection of its own: over HTTP/2 (undici's, in
 * an earlier version) the controller's pod watch stalled for up to several seconds under load and
 * then delivered the held events at once, while an idle client watching the same pods did not
 * (issue 16, docs/benchmarks.md); one long response on a connection of its own gains nothing from
 * HTTP/2.
 */
async function send(
  kube: KubeAccess,
  url: URL,
  req: { readonly method: 'GET' | 'POST' | 'PUT' | 'DELETE'; readonly signal: AbortSignal; readonly accept: string; readonly watch?: boolean; readonly json?: string },
): Promise<Response> {
  const access = await kube.request(url, { watch: req.watch === true });
  const headers: Record<string, string | number> = { ...access.headers, Accept: req.accept };
  if (req.json !== undefined) {
    headers['Content-Type'] = 'application/json';
    headers['Content-Length'] = Buffer.byteLength(req.json);
  }
  const request = url.protocol === 'http:' ? http.request : httpsRequest;
  try {
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      const outgoing = request(url, { method: req.method, headers, agent: access.agent, signal: req.signal }, resolve);
      // Kept for the whole request: an error after the headers also reaches the body's reader.
      outgoing.on('error', reject);
      outgoing.end(req.json);
    });
    const type = res.headers['content-type'];
    return { status: res.statusCode ?? 0, contentType: type ?? '', body: res, signal: req.signal, done: access.done };
  } catch (err) {
    access.done();
    throw abortReason(req.signal, err);
  }
}

/**
 * One request whose answer is read whole, as text (the bench's pod driver; anything that needs
 * the answer's body, not a decoded list).
 */
export async function requestText(
  kube: KubeAccess,
  method: 'GET' | 'POST' | 'PUT' | 'DELETE',
  path: string,
  json?: string,
  timeoutMs = POST_TIMEOUT_MS,
): Promise<{ readonly status: number; readonly text: string }> {
  const signal = AbortSignal.timeout(timeoutMs);
  const res = await send(kube, urlOf(kube, path, {}), { method, signal, accept: 'application/json', ...(json === undefined ? {} : { json }) });
  try {
    return { status: res.status, text: (await readAll(res)).toString('utf8') };
  } finally {
    res.done();
  }
}

/** A body read to its end; after the request's signal aborted, rejects with its reason. */
async function readAll(res: Response): Promise<Buffer> {
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of res.body) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
  } catch (err) {
    throw abortReason(res.signal, err);
  }
  return Buffer.concat(chunks);
}

/** The error for a non-200 answer, with the Status message when the body carries one. */
async function httpError(res: Response): Promise<KubeHttpError> {
  let status: unknown;
  let message = http.STATUS_CODES[res.status] ?? `HTTP ${res.status}`;
  try {
    const body = await readAll(res);
    status = isProtobuf(res.contentType) ? decodeObject(new Reader(body), decodeStatus) : (JSON.parse(body.toString('utf8')) as unknown);
    const m = (status as { message?: unknown } | null)?.message;
    if (typeof m === 'string' && m !== '') message = m;
  } catch {
    // Not a Status (a proxy's error page): the status line is all we have.
  }
  return new KubeHttpError(res.status, message, status);
}

/**
 * A list request still running after this long is aborted (TimeoutError). A backstop only: the
 * sources give up on a page much earlier (listTimeoutMs), this frees the request itself.
 */
const LIST_BACKSTOP_MS = 5 * 60_000;

/**
 * One page of a list at `path` (e.g. /api/v1/pods). Items are plain JSON, or with a `decoder`
 * (protobuf asked for) objects of the same shape holding only the fields the decoder reads.
 */
export async function listPage(
  kube: KubeAccess,
  path: string,
  req: {
    readonly limit: number;
    readonly continueToken: string | undefined;
    readonly labelSelector?: string | undefined;
    readonly fieldSelector?: string | undefined;
    /** Abort the request after this long (default 5 min). */
    readonly timeoutMs?: number | undefined;
    /** Ask for protobuf and decode items with this (undefined: JSON). */
    readonly decoder?: ObjectDecoder | undefined;
  },
): Promise<RawListPage> {
  const url = urlOf(kube, path, {
    limit: req.limit,
    continue: req.continueToken,
    labelSelector: req.labelSelector,
    fieldSelector: req.fieldSelector,
  });
  const res = await send(kube, url, { method: 'GET', signal: AbortSignal.timeout(req.timeoutMs ?? LIST_BACKSTOP_MS), accept: acceptOf(req.decoder, false) });
  let body: Buffer;
  try {
    if (res.status !== 200) throw await httpError(res);
    body = await readAll(res);
  } finally {
    res.done();
  }
  const list = (
    req.decoder !== undefined && isProtobuf(res.contentType) ? decodeList(body, req.decoder) : JSON.parse(body.toString('utf8'))
  ) as {
    items?: unknown[] | null;
    metadata?: { resourceVersion?: string; continue?: string };
  };
  return {
    items: list.items ?? [],
    resourceVersion: list.metadata?.resourceVersion ?? '',
    continueToken: list.metadata?.continue || undefined,
  };
}

/** A POST still running after this long is aborted (TimeoutError). */
const POST_TIMEOUT_MS = 30_000;

/**
 * POSTs `body` as JSON to `path` (an Event: /apis/events.k8s.io/v1/namespaces/{ns}/events).
 * Resolves once the answer was read (not decoded: nobody needs it); rejects with a
 * KubeHttpError (statusCode and code, the Status message) for a non-2xx answer.
 */
export async function postJson(kube: KubeAccess, path: string, body: unknown, timeoutMs = POST_TIMEOUT_MS): Promise<void> {
  const url = urlOf(kube, path, {});
  const res = await send(kube, url, { method: 'POST', signal: AbortSignal.timeout(timeoutMs), accept: 'application/json', json: JSON.stringify(body) });
  try {
    if (res.status < 200 || res.status > 299) throw await httpError(res);
    await readAll(res);
  } finally {
    res.done();
  }
}

export interface WatchRequest {
  readonly resourceVersion: string;
  readonly timeoutSeconds: number;
  readonly labelSelector?: string | undefined;
  readonly fieldSelector?: string | undefined;
  /**
   * Abort with a TimeoutError when no byte arrived for this long (also before the headers).
   * A backstop: the sources run their own watchdog, shorter than this.
   */
  readonly inactivityMs: number;
  /** Ask for protobuf frames and decode objects with this (undefined: JSON lines). */
  readonly decoder?: ObjectDecoder | undefined;
}

/**
 * Watches `path` from `req.resourceVersion` (bookmarks on). `onEvent` gets each event's type and
 * object; `onDone` is called exactly once: null when the server ended the stream, otherwise the
 * error (KubeHttpError with statusCode for a non-200 answer, a TimeoutError after `inactivityMs`
 * of silence, an AbortError after abort(), a SyntaxError for a line that is not JSON, a
 * ProtobufDecodeError for a malformed or truncated protobuf frame, or what onEvent threw). Like
 * client-node's Watch, it resolves once the headers arrived (or the request
 * failed: then onDone has been called already) and never rejects for request errors.
 */
export async function watchStream(
  kube: KubeAccess,
  path: string,
  req: WatchRequest,
  onEvent: (type: string, object: unknown) => void,
  onDone: (err: unknown) => void,
): Promise<{ abort(): void }> {
  const url = urlOf(kube, path, {
    watch: true,
    resourceVersion: req.resourceVersion,
    allowWatchBookmarks: true,
    timeoutSeconds: req.timeoutSeconds,
    labelSelector: req.labelSelector,
    fieldSelector: req.fieldSelector,
  });
  const controller = new AbortController();
  const handle = { abort: (): void => controller.abort() };
  let done = false;
  let release = (): void => undefined;
  const finish = (err: unknown): void => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    controller.abort();
    release();
    onDone(err);
  };
  const timer = setTimeout(() => {
    controller.abort(new DOMException('watch inactive: no data received', 'TimeoutError'));
  }, req.inactivityMs);
  timer.unref();
  let res: Response;
  try {
    res = await send(kube, url, { method: 'GET', signal: controller.signal, accept: acceptOf(req.decoder, true), watch: true });
  } catch (err) {
    finish(abortReason(controller.signal, err));
    return handle;
  }
  release = res.done;
  if (res.status !== 200) {
    finish(await httpError(res).catch((err: unknown) => abortReason(controller.signal, err)));
    return handle;
  }
  timer.refresh();
  const decoder = req.decoder !== undefined && isProtobuf(res.contentType) ? req.decoder : undefined;
  void pumpWatchBody(res.body, decoder, controller.signal, () => timer.refresh(), onEvent).then(finish, (err: unknown) => finish(abortReason(controller.signal, err)));
  return handle;
}

/** What a watch body is split into: JSON lines, or length-prefixed protobuf frames. */
interface Splitter {
  push(chunk: Uint8Array): void;
  end(): void;
}

/**
 * Reads a watch body to its end, handing each event to `onEvent` in order: newline-delimited JSON
 * without a decoder, length-prefixed protobuf WatchEvent frames with one. Resolves null when the
 * body ended cleanly; rejects with the first error (a line that is not JSON, a malformed or
 * truncated frame, what onEvent threw, a body that closed before its end), which ends the watch:
 * the reflector relists rather than silently missing an event. `onChunk` is called per chunk (the
 * inactivity timer).
 *
 * The body flows ('data' events) rather than being read with `for await`: the API server sends
 * each watch event as a chunk of its own, and the async iterator's promise, microtask and buffer
 * round trip per chunk was ~8 % of the controller's CPU in a 5,000-pod burst (docs/benchmarks.md).
 */
export function pumpWatchBody(
  body: Readable,
  decoder: ObjectDecoder | undefined,
  signal: AbortSignal,
  onChunk: () => void,
  onEvent: (type: string, object: unknown) => void,
): Promise<null> {
  return new Promise<null>((resolve, reject) => {
    let settled = false;
    const settle = (err: unknown): void => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      body.off('data', onData);
      // The 'error' listener stays: an error after this point must not become an uncaught one.
      if (err === null) resolve(null);
      else reject(err);
    };
    const fail = (err: unknown): void => {
      settle(err);
      body.destroy();
    };
    // Checked per event: onEvent may abort() in the middle of a chunk; no event comes after that.
    const splitter: Splitter =
      decoder === undefined
        ? new LineSplitter((line) => {
            if (signal.aborted) return;
            const event = JSON.parse(line) as { type?: unknown; object?: unknown };
            onEvent(String(event.type), event.object);
          })
        : new FrameSplitter((frame) => {
            if (signal.aborted) return;
            const event = decodeWatchEvent(frame, decoder);
            onEvent(event.type, event.object);
          });
    const onData = (chunk: Uint8Array): void => {
      if (settled) return;
      if (signal.aborted) {
        settle(signal.reason);
        return;
      }
      onChunk();
      try {
        splitter.push(chunk);
      } catch (err) {
        fail(err);
      }
    };
    const onAbort = (): void => settle(signal.reason);
    if (signal.aborted) {
      settle(signal.reason);
      return;
    }
    signal.addEventListener('abort', onAbort, { once: true });
    body.on('error', (err: unknown) => settle(signal.aborted ? signal.reason : err));
    body.once('end', () => {
      if (settled) return;
      try {
        splitter.end();
        settle(null);
      } catch (err) {
        settle(err);
      }
    });
    body.once('close', () => settle(signal.aborted ? signal.reason : new Error('watch body closed before its end')));
    body.on('data', onData);
  });
}

/** After an abort the signal's reason (TimeoutError, AbortError) says why, not the stream's echo. */
function abortReason(signal: AbortSignal, err: unknown): unknown {
  return signal.aborted && signal.reason !== undefined ? signal.reason : err;
}

/** Which objects a list or watch of one kind covers. */
export interface Selection {
  /** undefined: every namespace, or a cluster-scoped kind. */
  readonly namespace: string | undefined;
  readonly labelSelector?: string | undefined;
  readonly fieldSelector?: string | undefined;
}

export interface ListRequest extends Selection {
  readonly limit: number;
  readonly continueToken: string | undefined;
}

export interface WatchFromRequest extends Selection {
  readonly resourceVersion: string;
  readonly timeoutSeconds: number;
}

export interface WatchHandle {
  abort(): void;
}

/**
 * The two API calls of a reflector (client-go's ListerWatcher). Items and event objects come
 * decoded (plain JSON objects today); the kind's adapter reads them. `watch` resolves once the
 * response headers arrived; `onDone` is called once when the stream ends (null = closed by
 * the server), see watchStream.
 */
export interface ListerWatcher {
  list(req: ListRequest): Promise<RawListPage>;
  watch(req: WatchFromRequest, onEvent: (type: string, object: unknown) => void, onDone: (err: unknown) => void): Promise<WatchHandle>;
}

/**
 * The collection path of a resource under `apiPath` ('/api/v1', '/apis/discovery.k8s.io/v1'):
 * /api/v1/pods for every namespace, /api/v1/namespaces/{ns}/pods for one.
 */
export function collectionPath(apiPath: string, resource: string, namespace: string | undefined): string {
  return namespace === undefined ? `${apiPath}/${resource}` : `${apiPath}/namespaces/${encodeURIComponent(namespace)}/${resource}`;
}

/**
 * The protobuf decoders of the kinds the controller watches, by API path and resource: each
 * reads only what that kind's valueOf uses. A resource not listed here is always read as JSON
 * (a partial decoder must never silently drop a field a new kind's adapter reads).
 */
const PROTOBUF_DECODERS: Readonly<Record<string, ObjectDecoder>> = {
  '/api/v1/pods': decodePod,
  '/api/v1/namespaces': decodeMetadataObject,
  '/api/v1/nodes': decodeMetadataObject,
};

/** The protobuf decoder of a resource; undefined when it has none (it is then read as JSON). */
export function protobufDecoderOf(resource: { readonly apiPath: string; readonly resource: string }): ObjectDecoder | undefined {
  const key = `${resource.apiPath}/${resource.resource}`;
  return Object.hasOwn(PROTOBUF_DECODERS, key) ? PROTOBUF_DECODERS[key] : undefined;
}

/**
 * The real ListerWatcher of one resource, with the access's credentials. `watchInactivityMs`
 * is only a backstop: the reflector's own watchdog detects silence (set it a minute beyond).
 * `contentType` protobuf (for a resource with a decoder) asks for protobuf lists and watches.
 */
export function kubeListerWatcher(
  kube: KubeAccess,
  resource: { readonly apiPath: string; readonly resource: string },
  opts: { readonly watchInactivityMs: number; readonly contentType?: KubeContentType | undefined },
): ListerWatcher {
  const pathOf = (namespace: string | undefined): string => collectionPath(resource.apiPath, resource.resource, namespace);
  const decoder = opts.contentType === 'protobuf' ? protobufDecoderOf(resource) : undefined;
  return {
    list: (req) => listPage(kube, pathOf(req.namespace), { ...req, decoder }),
    watch: (req, onEvent, onDone) => watchStream(kube, pathOf(req.namespace), { ...req, inactivityMs: opts.watchInactivityMs, decoder }, onEvent, onDone),
  };
}
