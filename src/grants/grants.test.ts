import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { GrantTable, MAX_GRANT_ENTRIES, formatStaticGrants, parseGrantList, parseStaticGrants, serviceMatches, verdictFor, type GrantStatus, type GrantsMode, type Verdict } from './grants.ts';

describe('parseGrantList', () => {
  const cases: Array<[string, string[], number]> = [
    ['search', ['search'], 0],
    [' search , web ', ['search', 'web'], 0],
    ['search,,web,', ['search', 'web'], 0],
    ['', [], 0],
    ['  ,  ', [], 0],
    ['search,search', ['search'], 0],
    ['*', ['*'], 0],
    ['shop-*', ['shop-*'], 0],
    // Case is kept: keys are case-sensitive, so "Search" is another service.
    ['Search', ['Search'], 0],
    ['search,bad/name,web', ['search', 'web'], 1],
    ['../etc', [], 1],
    ['-x', [], 1],
    ['*x', [], 1],
    ['a*b', [], 1],
    ['**', [], 1],
    ['se arch', [], 1],
    ['x'.repeat(64), [], 1],
  ];
  for (const [text, patterns, problems] of cases) {
    it(`${JSON.stringify(text)} -> ${JSON.stringify(patterns)}`, () => {
      const parsed = parseGrantList(text);
      assert.deepEqual(parsed.patterns, patterns);
      assert.equal(parsed.problems.length, problems, parsed.problems.join('; '));
    });
  }

  it('reads at most MAX_GRANT_ENTRIES entries', () => {
    const parsed = parseGrantList(Array.from({ length: MAX_GRANT_ENTRIES + 10 }, (_, i) => `s${String(i)}`).join(','));
    assert.equal(parsed.patterns.length, MAX_GRANT_ENTRIES);
    assert.equal(parsed.problems.length, 1);
  });
});

describe('serviceMatches', () => {
  const cases: Array<[string[], string, boolean]> = [
    [['search'], 'search', true],
    [['search'], 'Search', false],
    [['search'], 'search2', false],
    [['search'], 'searc', false],
    [['*'], 'anything', true],
    [['shop-*'], 'shop-cart', true],
    [['shop-*'], 'shop-', true],
    [['shop-*'], 'shop', false],
    [['shop-*'], 'workshop-cart', false],
    [[], 'search', false],
    [['a', 'b'], 'b', true],
  ];
  for (const [patterns, service, expected] of cases) {
    it(`${JSON.stringify(patterns)} ${expected ? 'matches' : 'does not match'} ${service}`, () => {
      assert.equal(serviceMatches(patterns, service), expected);
    });
  }
});

describe('parseStaticGrants', () => {
  it('parses namespaces and merges repeats', () => {
    const { grants, problems } = parseStaticGrants(' team-a = search,web ; platform=* ;team-a=cart;');
    assert.deepEqual(problems, []);
    assert.deepEqual([...grants], [['team-a', ['search', 'web', 'cart']], ['platform', ['*']]]);
    assert.equal(formatStaticGrants(grants), 'platform=*;team-a=search,web,cart');
  });

  it('an empty flag grants nothing', () => {
    assert.equal(parseStaticGrants('').grants.size, 0);
    assert.deepEqual(parseStaticGrants('').problems, []);
  });

  const bad: Array<[string, RegExp]> = [
    ['team-a', /must be namespace=service/],
    ['Team_A=search', /not a namespace name/],
    ['=search', /not a namespace name/],
    ['team-a=', /no services listed/],
    ['team-a=bad/name', /not a service name/],
  ];
  for (const [text, problem] of bad) {
    it(`rejects ${JSON.stringify(text)}`, () => {
      const { problems } = parseStaticGrants(text);
      assert.equal(problems.length, 1);
      assert.match(problems[0] ?? '', problem);
    });
  }
});

describe('GrantTable', () => {
  it('merges static grants with annotations; unknown namespaces are unknown, not refused', () => {
    const table = new GrantTable(new Map([['team-a', ['search']]]));
    assert.equal(table.status('team-a', 'search'), 'granted', 'static grants need no cache');
    assert.equal(table.status('team-a', 'web'), 'unknown');
    assert.equal(table.status('team-b', 'search'), 'unknown');
    assert.deepEqual(table.setNamespace('team-a', 'web'), { changed: true, problems: [] });
    assert.deepEqual(table.setNamespace('team-b', undefined), { changed: true, problems: [] });
    assert.equal(table.status('team-a', 'search'), 'granted');
    assert.equal(table.status('team-a', 'web'), 'granted');
    assert.equal(table.status('team-a', 'cart'), 'not-granted');
    assert.equal(table.status('team-b', 'search'), 'not-granted');
    assert.equal(table.known('team-b'), true);
  });

  it('reports changes only when the annotation changed, and its problems', () => {
    const table = new GrantTable();
    assert.equal(table.setNamespace('ns', 'search').changed, true);
    assert.equal(table.setNamespace('ns', 'search').changed, false);
    const update = table.setNamespace('ns', 'search,bad/x');
    assert.equal(update.changed, true);
    assert.equal(update.problems.length, 1);
    assert.equal(table.status('ns', 'search'), 'granted');
    assert.equal(table.setNamespace('ns', undefined).changed, true);
    assert.equal(table.status('ns', 'search'), 'not-granted');
    assert.equal(table.removeNamespace('ns'), true);
    assert.equal(table.removeNamespace('ns'), false);
    assert.equal(table.status('ns', 'search'), 'unknown');
  });
});

describe('verdictFor', () => {
  const cases: Array<[GrantsMode, GrantStatus, Verdict]> = [
    ['off', 'granted', 'allow'],
    ['off', 'not-granted', 'allow'],
    ['off', 'unknown', 'allow'],
    ['open', 'granted', 'allow'],
    ['open', 'not-granted', 'allow-ungranted'],
    ['open', 'unknown', 'allow'],
    ['strict', 'granted', 'allow'],
    ['strict', 'not-granted', 'refuse'],
    ['strict', 'unknown', 'hold'],
  ];
  for (const [mode, status, verdict] of cases) {
    it(`${mode} + ${status} -> ${verdict}`, () => assert.equal(verdictFor(mode, status), verdict));
  }
});
