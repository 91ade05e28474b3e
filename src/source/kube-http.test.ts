// The watch stream's line splitter, error status codes and collection paths (the HTTP side is
// in kube-http.int.test.ts).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { LineSplitter, collectionPath, statusCodeOf } from './kube-http.ts';
import { cut } from './testing.ts';

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
