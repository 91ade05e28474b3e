// Property-based tests (fast-check): no generated annotation, pod data or key root makes
// mapPod throw or produce a key outside the key root.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { mapPod } from './map-pod.ts';
import { defaultMappingConfig, normalizeKeyRoot } from './config.ts';
import type { MappingConfig } from './config.ts';
import type { SlimPod } from '../types.ts';

const PREFIX = 'etcd-registrar.io/';
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

const tricky = fc.constantFrom(
  '', '.', '..', '...', '/', '//', '../', '/..', '../../etc', 'a/../b', '%2e%2e', '%2f', '\\..\\', '\u0000', 'a\u0000b',
  '\n', '\r\n', '\u2028', '\u202e', '\ud800', '😀', 'ａ', ' ', ' 86 ', 'true', 'True', 'TRUE', 'pod', 'host', 'ipv4', 'ipv6',
  'ipv4,ipv6', 'http', 'metrics', '__proto__', 'constructor', 'toString', '0', '65535', '65536', '-1', '86,86', '86,,86',
  'x'.repeat(300), 'a'.repeat(63), 'a'.repeat(64), 'search', 'PRE', 'PRE_EU', '{ip}', '{service}',
);

/** Arbitrary strings of every sort: full unicode incl. lone surrogates and controls, huge ones. */
const nasty: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: tricky },
  { weight: 3, arbitrary: fc.string({ unit: 'binary', maxLength: 24 }) },
  { weight: 2, arbitrary: fc.string({ unit: fc.constantFrom('a', 'Z', '0', '.', '/', '-', '_', ',', ' ', '\u0000', '\n', 'é'), maxLength: 24 }) },
  { weight: 1, arbitrary: fc.tuple(tricky, fc.integer({ min: 1, max: 5000 })).map(([s, n]) => s.repeat(n)) },
);

const portList: fc.Arbitrary<string> = fc.oneof(
  fc.array(fc.oneof(fc.integer({ min: -5, max: 70000 }).map(String), tricky, nasty), { maxLength: 80 }).map((a) => a.join(',')),
  fc.integer({ min: 0, max: 5000 }).map((n) => Array.from({ length: n }, (_, i) => String(i % 70000)).join(',')),
  nasty,
);

const ip: fc.Arbitrary<string> = fc.oneof({ weight: 4, arbitrary: fc.ipV4() }, { weight: 4, arbitrary: fc.ipV6() }, { weight: 1, arbitrary: nasty });

const maybe = <T>(a: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> => fc.option(a, { nil: undefined, freq: 3 });
/** Mostly a plausible value, sometimes anything: so that both valid and invalid mappings are common. */
const usually = (good: fc.Arbitrary<string>, bad: fc.Arbitrary<string> = nasty): fc.Arbitrary<string> =>
  fc.oneof({ weight: 6, arbitrary: good }, { weight: 1, arbitrary: bad });

const annotations: fc.Arbitrary<Record<string, string>> = fc
  .record({
    register: fc.oneof({ weight: 6, arbitrary: fc.constant('true') }, { weight: 1, arbitrary: nasty }),
    service: maybe(usually(fc.constantFrom('search', 'cart.v2', 'my_app'))),
    port: fc.option(usually(fc.constantFrom('86', '86,9090', 'http', ' 86 , metrics'), portList), { nil: undefined, freq: 10 }),
    environment: maybe(usually(fc.constantFrom('PROD', 'dev-1'))),
    address: maybe(usually(fc.constantFrom('pod', 'host', 'Host'))),
    'ip-families': maybe(usually(fc.constantFrom('ipv4', 'ipv6', 'ipv4,ipv6', 'ipv6, IPV4'))),
  })
  .map((r) => {
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(r)) if (v !== undefined) out[PREFIX + k] = v;
    return out;
  });

const pod: fc.Arbitrary<SlimPod> = fc.record({
  uid: fc.string({ maxLength: 8 }),
  namespace: usually(fc.constant('default')),
  name: usually(fc.constant('search-1')),
  resourceVersion: fc.constant('1'),
  creationTimestamp: fc.constant('2024-01-01T00:00:00Z'),
  annotations,
  labels: fc.record({ app: maybe(usually(fc.constant('search'))), 'app.kubernetes.io/name': maybe(usually(fc.constant('web'))) }).map((r) => {
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(r)) if (v !== undefined) out[k] = v;
    return out;
  }),
  nodeName: usually(fc.constant('node-1')),
  hostIP: ip,
  podIPs: fc.array(ip, { maxLength: 3 }),
  hostIPs: fc.array(ip, { maxLength: 3 }),
  phase: fc.constantFrom('Pending', 'Running', 'Succeeded', 'Failed', 'Unknown'),
  ready: fc.boolean(),
  terminating: fc.boolean(),
  namedPorts: fc.oneof(
    { weight: 3, arbitrary: fc.constant({ http: 8080, metrics: 9090 }) },
    { weight: 1, arbitrary: fc.dictionary(fc.oneof(tricky, nasty), fc.integer({ min: -1, max: 70000 }), { maxKeys: 4 }) },
  ),
});

const relTemplate = fc.constantFrom(
  '{service}_{environment}/{ip}-{port}',
  '{service}/{environment}/{ip}-{port}',
  '{namespace}/{pod}/{ip}-{port}',
  '{node}/{service}/{ip}:{port}',
  '{zone}/{service}/{ip}-{port}',
  '{service}.{zone}/{ip}-{port}',
  '{ip}-{port}',
  '{service}{environment}/{ip}.{port}',
  '{service}.{environment}.{ip}.{port}',
);

const config: fc.Arbitrary<MappingConfig> = fc
  .record({
    root: fc.oneof({ weight: 3, arbitrary: fc.constant('/') }, { weight: 3, arbitrary: fc.constantFrom('/registry/', 'skydns', '/a/b') }, { weight: 2, arbitrary: nasty }),
    rel: fc.oneof({ weight: 4, arbitrary: relTemplate }, { weight: 1, arbitrary: nasty }),
    // Sometimes a template that does not even start with the root.
    absolute: fc.oneof({ weight: 6, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: nasty }),
    environment: usually(fc.constantFrom('PRE', '')),
    valueTemplate: usually(fc.constantFrom('{ip}:{port}', '{service} {ip} {port} {pod} {namespace} {node}', '{zone}|{ip}:{port}')),
    valueFormat: fc.constantFrom('template', 'json') as fc.Arbitrary<'template' | 'json'>,
  })
  .map(({ root, rel, absolute, environment, valueTemplate, valueFormat }) => ({
    ...defaultMappingConfig,
    keyRoot: root,
    keyTemplate: absolute ?? normalizeKeyRoot(root) + rel,
    environment,
    valueTemplate,
    valueFormat,
  }));

/** Independent oracle for key safety (deliberately not reusing keyProblem). */
function assertSafeKey(key: string, root: string): void {
  assert.ok(key.startsWith(root), `${JSON.stringify(key)} not under ${JSON.stringify(root)}`);
  assert.doesNotMatch(key, CONTROL);
  const segments = key.split('/');
  assert.equal(segments[0], '', 'absolute');
  for (const s of segments.slice(1)) {
    assert.notEqual(s, '', `empty segment in ${JSON.stringify(key)}`);
    assert.notEqual(s, '.', `'.' segment in ${JSON.stringify(key)}`);
    assert.notEqual(s, '..', `'..' segment in ${JSON.stringify(key)}`);
  }
}

describe('mapPod properties', () => {
  it('never throws; every key stays under the key root with no ., .., empty segment or control character', () => {
    let valid = 0;
    let registrations = 0;
    let pending = 0;
    // A node's zone: unknown (undefined), unlabelled (''), plausible, or anything at all.
    const zone = fc.oneof(fc.constant(undefined), fc.constant(''), fc.constantFrom('zone-a', 'eu-west-1b'), nasty);
    fc.assert(
      fc.property(pod, config, zone, (p, cfg, z) => {
        const m = mapPod(p, cfg, (node) => (node === p.nodeName ? z : undefined));
        if (m.kind === 'pending') {
          pending++;
          assert.equal(z, undefined, 'only an unknown node leaves a pod pending');
          return;
        }
        if (m.kind === 'invalid') {
          assert.ok(m.problems.length > 0);
          for (const problem of m.problems) {
            assert.doesNotMatch(problem, /internal error/);
            assert.doesNotMatch(problem, CONTROL);
            assert.ok(problem.length < 2000, 'messages stay short');
          }
          return;
        }
        if (m.kind === 'ignored') return;
        valid++;
        const root = normalizeKeyRoot(cfg.keyRoot);
        for (const r of m.registrations) {
          registrations++;
          assertSafeKey(r.key, root);
          assert.doesNotMatch(r.value, CONTROL);
          assert.ok(r.port >= 1 && r.port <= 65535);
        }
        assert.equal(new Set(m.registrations.map((r) => r.key)).size, m.registrations.length, 'keys are distinct');
        if (m.registrations.length === 0) assert.equal(m.serving, false);
      }),
      { numRuns: 10_000 },
    );
    // The generators must actually reach the interesting case.
    assert.ok(valid > 500, `only ${String(valid)} valid mappings`);
    assert.ok(registrations > 500, `only ${String(registrations)} registrations`);
    assert.ok(pending > 50, `only ${String(pending)} pending mappings`);
  });

  it('default format round-trips: key and value parse back to the registration', () => {
    const simple = fc.record({
      service: fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9.-]{0,20}$/),
      environment: fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9.-]{0,10}$/),
      ports: fc.uniqueArray(fc.integer({ min: 1, max: 65535 }), { minLength: 1, maxLength: 5 }),
      ip: fc.oneof(fc.ipV4(), fc.ipV6()),
    });
    fc.assert(
      fc.property(simple, ({ service, environment, ports, ip: addr }) => {
        const p: SlimPod = {
          uid: 'u', namespace: 'default', name: 'p', resourceVersion: '1', creationTimestamp: '', labels: {},
          annotations: { [PREFIX + 'register']: 'true', [PREFIX + 'service']: service, [PREFIX + 'environment']: environment, [PREFIX + 'port']: ports.join(',') },
          nodeName: 'n', hostIP: '', podIPs: [addr], hostIPs: [], phase: 'Running', ready: true, terminating: false, namedPorts: {},
        };
        const m = mapPod(p, defaultMappingConfig);
        assert.equal(m.kind, 'valid', JSON.stringify(m));
        if (m.kind !== 'valid') return;
        assert.equal(m.serving, true);
        assert.deepEqual(m.registrations.map((r) => r.port), ports);
        for (const r of m.registrations) {
          const kk = /^\/(.+)_([^_/]+)\/(.+)-(\d+)$/.exec(r.key);
          assert.ok(kk, r.key);
          assert.deepEqual(kk.slice(1), [service, environment, addr, String(r.port)]);
          const v = /^(?:\[(.+)\]|([^:]+)):(\d+)$/.exec(r.value);
          assert.ok(v, r.value);
          assert.equal(v[1] ?? v[2], addr);
          assert.equal(Number(v[3]), r.port);
        }
      }),
      { numRuns: 2_000 },
    );
  });
});
