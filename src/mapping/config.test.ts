import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { defaultMappingConfig, keyProblem, mappingNeedsZones, normalizeKeyRoot, validateMappingConfig } from './config.ts';
import type { MappingConfig } from './config.ts';

const cfg = (over: Partial<MappingConfig>): MappingConfig => ({ ...defaultMappingConfig, ...over });

describe('validateMappingConfig', () => {
  it('accepts the defaults and common layouts', () => {
    assert.deepEqual(validateMappingConfig(defaultMappingConfig), []);
    assert.deepEqual(validateMappingConfig(cfg({ environment: 'PRE' })), []);
    assert.deepEqual(validateMappingConfig(cfg({ keyRoot: '/skydns', keyTemplate: '/skydns/{environment}/{service}/{ip}-{port}' })), []);
    assert.deepEqual(validateMappingConfig(cfg({ keyRoot: 'registry/', keyTemplate: '/registry/{service}/{pod}_{ip}_{port}', valueFormat: 'json' })), []);
    assert.deepEqual(validateMappingConfig(cfg({ valueTemplate: '{{"host":"{ip}","port":{port}}}' })), []);
  });

  const bad: [string, Partial<MappingConfig>, RegExp][] = [
    ['unknown placeholder in key', { keyTemplate: '/{service}/{ip}-{port}/{region}' }, /key template .*unknown placeholder \{region\}/],
    ['unknown placeholder in value', { valueTemplate: '{ip}:{prot}' }, /value template .*unknown placeholder \{prot\}/],
    ['unbalanced {', { keyTemplate: '/{service}/{ip}-{port' }, /unbalanced '\{'/],
    ['unbalanced }', { valueTemplate: '{ip}:{port}}x}' }, /unbalanced '\}'/],
    ['missing {ip}', { keyTemplate: '/{service}_{environment}/{port}' }, /must contain \{ip\} and \{port\}/],
    ['missing {port}', { keyTemplate: '/{service}_{environment}/{ip}' }, /must contain \{ip\} and \{port\}/],
    ['not under root', { keyRoot: '/registry/', keyTemplate: '/{service}/{ip}-{port}' }, /must start with the key root "\/registry\/"/],
    ['root prefix only partly literal', { keyRoot: '/registry/', keyTemplate: '/registry{service}/{ip}-{port}' }, /must start with the key root/],
    ['relative template', { keyTemplate: '{service}/{ip}-{port}' }, /must start with the key root "\/"/],
    ['.. segment in template', { keyTemplate: '/{service}/../{ip}-{port}' }, /has a '\.\.' segment/],
    ['. segment in template', { keyTemplate: '/./{service}/{ip}-{port}' }, /has a '\.' segment/],
    ['// in template', { keyTemplate: '/{service}//{ip}-{port}' }, /empty segment/],
    ['trailing / in template', { keyTemplate: '/{service}/{ip}-{port}/' }, /empty segment/],
    ['adjacent placeholders', { keyTemplate: '/{service}/{ip}{port}' }, /\{ip\}\{port\} need a separator/],
    ['control char in key template', { keyTemplate: '/{service}\n/{ip}-{port}' }, /contains control characters/],
    ['root with ..', { keyRoot: '/a/../b/', keyTemplate: '/a/../b/{ip}-{port}' }, /key root "\/a\/\.\.\/b\/" has a '\.\.' segment/],
    ['root with //', { keyRoot: '/a//b', keyTemplate: '/a//b/{ip}-{port}' }, /key root .* has an empty segment/],
    ['root with control char', { keyRoot: '/a\u0000/', keyTemplate: '/a\u0000/{ip}-{port}' }, /key root .* contains control characters/],
    ['root inside a reserved prefix', { keyRoot: '/etcd-registrar/owners/x', keyTemplate: '/etcd-registrar/owners/x/{ip}-{port}', reservedPrefixes: ['/etcd-registrar/owners/'] }, /lies inside the reserved prefix/],
    ['reserved prefix /', { reservedPrefixes: ['/'] }, /lies inside the reserved prefix "\/"/],
    ['bad environment default', { environment: 'P/RE' }, /environment "P\/RE" may contain only/],
    ['bad prefix', { annotationPrefix: 'Etcd Registrar' }, /annotation prefix "Etcd Registrar" must be/],
    ['prefix without slash', { annotationPrefix: 'etcd-registrar.io' }, /annotation prefix/],
    ['empty prefix', { annotationPrefix: '' }, /annotation prefix/],
    ['bad value format', { valueFormat: 'yaml' as 'json' }, /value format "yaml" must be "template", "json" or "skydns"/],
    ['empty value template', { valueTemplate: '' }, /value template is empty/],
    ['control char in value template', { valueTemplate: '{ip}\r\n' }, /value template .* contains control characters/],
  ];
  for (const [name, over, re] of bad) {
    it(`reports: ${name}`, () => {
      const problems = validateMappingConfig(cfg(over));
      assert.ok(problems.some((p) => re.test(p)), JSON.stringify(problems));
      for (const p of problems) assert.doesNotMatch(p, /[\u0000-\u001f]/);
    });
  }

  it('ignores the value template when the format is json', () => {
    assert.deepEqual(validateMappingConfig(cfg({ valueFormat: 'json', valueTemplate: '' })), []);
  });

  it('returns a fresh array each time', () => {
    const c = cfg({ keyTemplate: '/{x}' });
    const a = validateMappingConfig(c);
    a.length = 0;
    assert.notDeepEqual(validateMappingConfig(c), []);
  });
});

describe('normalizeKeyRoot', () => {
  for (const [input, want] of [['', '/'], ['/', '/'], ['registry', '/registry/'], ['/registry', '/registry/'], ['/a/b/', '/a/b/']] as const) {
    it(`${JSON.stringify(input)} -> ${want}`, () => assert.equal(normalizeKeyRoot(input), want));
  }
});

describe('keyProblem', () => {
  const cases: [string, string, string | undefined][] = [
    ['/search_PRE/1.2.3.4-86', '/', undefined],
    ['/r/x/fd00::1-86', '/r/', undefined],
    ['/x/y', '/r/', 'is not under the key root "/r/"'],
    ['/', '/', 'is empty'],
    ['/a//b', '/', 'has an empty segment'],
    ['/a/', '/', 'has an empty segment'],
    ['/a/../b', '/', "has a '..' segment"],
    ['/a/./b', '/', "has a '.' segment"],
    ['/a/..', '/', "has a '..' segment"],
    ['/a/...', '/', undefined],
    ['/a/..b', '/', undefined],
    ['/a\u0000b', '/', 'contains control characters'],
    ['/a\u2028b', '/', 'contains control characters'],
  ];
  for (const [key, root, want] of cases) {
    it(`${JSON.stringify(key)} under ${root}`, () => assert.equal(keyProblem(key, root), want));
  }
});

describe('mappingNeedsZones (nodes are watched only then)', () => {
  it('is true for the JSON value format or a template using {zone}', () => {
    assert.equal(mappingNeedsZones(defaultMappingConfig), false);
    assert.equal(mappingNeedsZones({ ...defaultMappingConfig, valueFormat: 'json' }), true);
    assert.equal(mappingNeedsZones({ ...defaultMappingConfig, keyTemplate: '/{zone}/{ip}-{port}' }), true);
    assert.equal(mappingNeedsZones({ ...defaultMappingConfig, valueTemplate: '{ip}:{port}@{zone}' }), true);
    // '{{zone}}' is the literal text {zone}, not the placeholder.
    assert.equal(mappingNeedsZones({ ...defaultMappingConfig, valueFormat: 'template', valueTemplate: '{{zone}}' }), false);
  });
});
