// The watch stream's line splitter, error status codes and collection paths (the HTTP side is
// in kube-http.int.test.ts).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { LineSplitter, collectionPath, pumpWatchBody, statusCodeOf } from './kube-http.ts';
import { cut, pushedBody } from './testing.ts';

/** Feeds `chunks` and returns the lines, ended (trailing line flushed) unless told otherwise. */
function split(chunks: readonly Uint8Array[], end = true): string[] {
  const lines: string[] = [];
  const splitter = new LineSplitter((line) => lines.push(line));
  for (const chunk of chunks) splitter.push(chunk);
  if (end) splitter.end();
  return lines;
}

const bytes = (s: string): Buffer => Buffer.from(s, 'utf8');

describe('LineSplitter', () => {
  it('splits lines within and across chunks', () => {
    assert.deepEqual(split([bytes('{"a":1}\n{"b":2}\n')]), ['{"a":1}', '{"b":2}']);
    assert.deepEqual(split([bytes('{"a":'), bytes('1}\n{"b"'), bytes(':2}'), bytes('\n')]), ['{"a":1}', '{"b":2}']);
    const oneByteChunks = [...bytes('abc\ndef\n')].map((b) => Uint8Array.of(b));
    assert.deepEqual(split(oneByteChunks), ['abc', 'def']);
  });

  it('decodes a multi-byte UTF-8 character split across chunks', () => {
    const text = 'é€😀\n';
    const buf = bytes(text);
    // Every cut point, including inside the 2-, 3- and 4-byte sequences.
    for (let i = 1; i < buf.length; i++) {
      assert.deepEqual(split([buf.subarray(0, i), buf.subarray(i)]), ['é€😀'], `cut at byte ${i}`);
    }
    assert.deepEqual(split([...buf].map((b) => Uint8Array.of(b))), ['é€😀']);
  });

  it('drops the CR of CRLF, and empty or blank lines', () => {
    assert.deepEqual(split([bytes('a\r\n\r\n\n  \nb\r'), bytes('\n')]), ['a', 'b']);
    // A CR alone inside a line is kept (only a line ending's CR is dropped).
    assert.deepEqual(split([bytes('a\rb\n')]), ['a\rb']);
  });

  it('emits a last line without newline only at end()', () => {
    assert.deepEqual(split([bytes('a\nlast')], false), ['a']);
    const lines: string[] = [];
    const splitter = new LineSplitter((line) => lines.push(line));
    splitter.push(bytes('a\nla'));
    splitter.push(bytes('st'));
    splitter.end();
    splitter.end();
    assert.deepEqual(lines, ['a', 'last'], 'end() twice does not repeat the line');
  });

  it('accepts plain Uint8Arrays (web streams) that view part of a larger buffer', () => {
    const backing = new Uint8Array(bytes('xxxhello\nwor'));
    const tail = new Uint8Array(bytes('ld\nyyy'));
    assert.deepEqual(split([backing.subarray(3), tail.subarray(0, 3)]), ['hello', 'world']);
  });

  it('copies an unfinished line, so a reused chunk buffer cannot corrupt it', () => {
    const lines: string[] = [];
    const splitter = new LineSplitter((line) => lines.push(line));
    const chunk = bytes('ab\ncd');
    splitter.push(chunk);
    chunk.fill(0x7a); // the stream reuses its buffer for the next read
    splitter.push(bytes('ef\n'));
    assert.deepEqual(lines, ['ab', 'cdef']);
  });

  it('gives the same lines however the stream is cut into chunks', () => {
    const line = fc.string({ unit: 'binary', maxLength: 40 }).filter((s) => !s.includes('\n') && !s.includes('\r'));
    fc.assert(
      fc.property(
        fc.array(line, { maxLength: 20 }),
        fc.boolean(),
        fc.boolean(),
        fc.array(fc.nat(), { maxLength: 30 }),
        (ls, crlf, trailingNewline, at) => {
          const sep = crlf ? '\r\n' : '\n';
          const text = ls.join(sep) + (trailingNewline && ls.length > 0 ? sep : '');
          const expected = ls.filter((l) => l.trim() !== '');
          assert.deepEqual(split(cut(bytes(text), at)), expected);
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe('pumpWatchBody (JSON lines)', () => {
  /** A body the test pushes, read by pumpWatchBody; the events seen and how the read ended. */
  function pumping(signal = new AbortController().signal): { push(text: string): void; end(): void; destroy(err?: Error): void; events: string[]; chunks: number; ended: Promise<unknown> } {
    const body = pushedBody();
    const seen = { events: [] as string[], chunks: 0 };
    const ended = pumpWatchBody(body.body, undefined, signal, () => seen.chunks++, (type, object) => seen.events.push(`${type} ${JSON.stringify(object)}`)).then(
      (value) => ({ value }),
      (error: unknown) => ({ error }),
    );
    return {
      push: (text) => body.push(bytes(text)),
      end: () => body.end(),
      destroy: (err) => body.body.destroy(err),
      get events() {
        return seen.events;
      },
      get chunks() {
        return seen.chunks;
      },
      ended,
    };
  }

  it('hands every event over in order and resolves null at the end, a last line without newline included', async () => {
    const watch = pumping();
    watch.push('{"type":"ADDED","object":{"a":1}}\n{"type":"MODI');
    watch.push('FIED","object":{"a":2}}\n{"type":"DELETED","object":{"a":3}}');
    watch.end();
    assert.deepEqual(await watch.ended, { value: null });
    assert.deepEqual(watch.events, ['ADDED {"a":1}', 'MODIFIED {"a":2}', 'DELETED {"a":3}']);
    assert.equal(watch.chunks, 2);
  });

  it('a line that is not JSON rejects, and nothing after it is handed over', async () => {
    const watch = pumping();
    watch.push('{"type":"ADDED","object":{"a":1}}\nnot json\n{"type":"ADDED","object":{"a":2}}\n');
    const ended = (await watch.ended) as { error?: unknown };
    assert.ok(ended.error instanceof SyntaxError, String(ended.error));
    assert.deepEqual(watch.events, ['ADDED {"a":1}']);
  });

  it('a body that closes before its end rejects (the watch ends and the reflector relists), as does one that fails', async () => {
    const closed = pumping();
    closed.push('{"type":"ADDED","object":{"a":1}}\n');
    closed.destroy();
    assert.match(String(((await closed.ended) as { error?: unknown }).error), /watch body closed before its end/);
    assert.deepEqual(closed.events, ['ADDED {"a":1}']);
    const failed = pumping();
    failed.destroy(new Error('socket hang up'));
    assert.match(String(((await failed.ended) as { error?: unknown }).error), /socket hang up/);
  });

  it('an abort rejects with its reason, also in the middle of a chunk: no event after it', async () => {
    const controller = new AbortController();
    const body = pushedBody();
    const events: string[] = [];
    const ended = pumpWatchBody(body.body, undefined, controller.signal, () => undefined, (type) => {
      events.push(type);
      controller.abort(new Error('stopped by the reflector'));
    }).then(
      () => 'resolved',
      (error: unknown) => String(error),
    );
    body.push(bytes('{"type":"ADDED","object":{}}\n{"type":"MODIFIED","object":{}}\n'));
    assert.equal(await ended, 'Error: stopped by the reflector');
    assert.deepEqual(events, ['ADDED']);
  });
});

describe('statusCodeOf', () => {
  it('reads KubeHttpError and ApiException codes, nothing else', () => {
    assert.equal(statusCodeOf(Object.assign(new Error('x'), { statusCode: 410 })), 410);
    assert.equal(statusCodeOf({ code: 403 }), 403);
    assert.equal(statusCodeOf({ code: 'ECONNRESET' }), undefined);
    assert.equal(statusCodeOf(null), undefined);
  });
});

describe('collectionPath', () => {
  it('covers every namespace, one namespace (escaped), and other API groups', () => {
    assert.equal(collectionPath('/api/v1', 'pods', undefined), '/api/v1/pods');
    assert.equal(collectionPath('/api/v1', 'pods', 'team a'), '/api/v1/namespaces/team%20a/pods');
    assert.equal(collectionPath('/apis/discovery.k8s.io/v1', 'endpointslices', 'web'), '/apis/discovery.k8s.io/v1/namespaces/web/endpointslices');
  });
});
