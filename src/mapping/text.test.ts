import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { hasControlChars, ipFamilyOf, nameProblem, quote } from './text.ts';
import { compileTemplate, renderTemplate } from './template.ts';

describe('ipFamilyOf', () => {
  const cases: [string, 0 | 4 | 6][] = [
    ['10.0.0.1', 4], ['0.0.0.0', 4], ['255.255.255.255', 4], ['172.18.100.31', 4],
    ['256.0.0.1', 0], ['1.2.3', 0], ['1.2.3.4.5', 0], ['1..2.3', 0], ['1.2.3.4.', 0], ['', 0], ['a.b.c.d', 0], ['1234.1.1.1', 0], [' 1.2.3.4', 0],
    ['::', 6], ['::1', 6], ['fd00::1', 6], ['2001:db8:0:0:0:0:0:1', 6], ['2001:DB8::A', 6], ['::ffff:10.1.2.3', 6], ['fd00:1:2:3:4:5:6::', 6],
    ['1:2:3:4:5:6:7:8:9', 0], ['1:2:3:4:5:6:7', 0], ['1::2::3', 0], [':::', 0], ['fd00::g', 0], ['12345::1', 0], ['fe80::1%eth0', 0], ['[fd00::1]', 0],
    ['1:2:3:4:5:6:7::8', 0], ['::1.2.3.4:1', 0], [':1::', 0],
  ];
  for (const [ip, fam] of cases) it(`${JSON.stringify(ip)} -> ${String(fam)}`, () => assert.equal(ipFamilyOf(ip), fam));
});

describe('nameProblem', () => {
  it('accepts names', () => {
    for (const n of ['search', 'PRE', 'a', '0', 'my_app.v2-x', 'a'.repeat(63)]) assert.equal(nameProblem(n, 63), undefined, n);
  });
  it('rejects names', () => {
    for (const n of ['', '.', '..', '...', '.a', '-a', '_a', 'a/b', 'a b', 'a\u0000', 'é', 'a'.repeat(64), 'a:b', 'a\\b', 'a%2fb']) {
      assert.notEqual(nameProblem(n, 63), undefined, JSON.stringify(n));
    }
  });
});

describe('quote', () => {
  it('escapes quotes, backslashes, controls, bidi and lone surrogates', () => {
    assert.equal(quote('a"b\\c'), '"a\\"b\\\\c"');
    assert.equal(quote('\u0000\n\u007f\u0085\u2028\u202e\ud800'), '"\\u{0}\\u{a}\\u{7f}\\u{85}\\u{2028}\\u{202e}\\u{d800}"');
    assert.equal(quote('😀é'), '"😀é"');
  });
  it('truncates long values and says how long they were', () => {
    assert.equal(quote('x'.repeat(100)), `"${'x'.repeat(64)}"… (100 chars)`);
  });
});

describe('hasControlChars', () => {
  it('finds C0, DEL, C1 and line separators only', () => {
    for (const s of ['\u0000', 'a\tb', '\u007f', '\u009f', '\u2029']) assert.ok(hasControlChars(s));
    for (const s of ['', 'abc', 'é😀', '\u00a0', '\u202e']) assert.ok(!hasControlChars(s));
  });
});

describe('templates', () => {
  const values = { service: 's', environment: 'e', ip: '1.2.3.4', port: '86', namespace: 'ns', pod: 'p', node: 'n', zone: 'z' };
  it('renders placeholders and literal braces', () => {
    assert.equal(renderTemplate(compileTemplate('/{service}_{environment}/{ip}-{port}'), values), '/s_e/1.2.3.4-86');
    assert.equal(renderTemplate(compileTemplate('{{{ip}}}:{{}}'), values), '{1.2.3.4}:{}');
    assert.equal(renderTemplate(compileTemplate('{namespace}/{pod}@{node}'), values), 'ns/p@n');
    assert.equal(renderTemplate(compileTemplate('/{zone}/{ip}'), values), '/z/1.2.3.4');
    assert.deepEqual(compileTemplate('/{zone}/{ip}').problems, [], '{zone} is a known placeholder');
    assert.equal(renderTemplate(compileTemplate(''), values), '');
  });
  it('keeps bad placeholders literal and reports them', () => {
    const t = compileTemplate('/{x}/{ip');
    assert.equal(renderTemplate(t, values), '/{x}/{ip');
    assert.equal(t.problems.length, 2);
  });
  it('caches by source', () => assert.equal(compileTemplate('/{ip}-{port}'), compileTemplate('/{ip}-{port}')));
});
