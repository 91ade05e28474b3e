import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mapPod } from './map-pod.ts';
import type { MappingConfig } from './config.ts';
import { config, makePod, testConfig } from './testing.ts';
import type { PodOptions } from './testing.ts';
import type { PodMapping } from '../types.ts';

interface Case {
  readonly name: string;
  readonly pod?: PodOptions;
  readonly cfg?: Partial<MappingConfig>;
  /** Expected [key, value] pairs, or 'ignored', or regexes every one of which must match a problem. */
  readonly want: 'ignored' | readonly (readonly [string, string])[] | { readonly invalid: readonly RegExp[] };
  readonly serving?: boolean;
  /** node -> zone known to the node cache; default: node-1 in zone-a. */
  readonly zones?: Readonly<Record<string, string>>;
}

const ZONES: Readonly<Record<string, string>> = { 'node-1': 'zone-a', 'n"1': '', 'n\u007f': 'zone-a' };

function check(c: Case): PodMapping {
  const zones = c.zones ?? ZONES;
  const m = mapPod(makePod(c.pod), c.cfg === undefined ? testConfig : config(c.cfg), (node) => (Object.hasOwn(zones, node) ? zones[node] : undefined));
  if (c.want === 'ignored') {
    assert.equal(m.kind, 'ignored');
  } else if ('invalid' in c.want) {
    assert.equal(m.kind, 'invalid', JSON.stringify(m));
    if (m.kind !== 'invalid') return m;
    for (const re of c.want.invalid) {
      assert.ok(m.problems.some((p) => re.test(p)), `no problem matches ${String(re)}: ${JSON.stringify(m.problems)}`);
    }
  } else {
    assert.equal(m.kind, 'valid', JSON.stringify(m));
    if (m.kind !== 'valid') return m;
    assert.deepEqual(
      m.registrations.map((r) => [r.key, r.value]),
      c.want.map(([k, v]) => [k, v]),
    );
    if (c.serving !== undefined) assert.equal(m.serving, c.serving);
  }
  return m;
}

const SEED: readonly (readonly [string, string])[] = [['/search_PRE/172.18.100.31-86', '172.18.100.31:86']];

const cases: Case[] = [
  // --- opt-in
  { name: 'seed format', want: SEED, serving: true },
  { name: 'no annotations at all', pod: { annotations: {} }, want: 'ignored' },
  { name: 'register false', pod: { ann: { register: 'false' } }, want: 'ignored' },
  { name: 'register yes is not true', pod: { ann: { register: 'yes' } }, want: 'ignored' },
  { name: 'register empty', pod: { ann: { register: '' } }, want: 'ignored' },
  { name: 'register True tolerated', pod: { ann: { register: 'True' } }, want: SEED },
  { name: 'register " TRUE " tolerated', pod: { ann: { register: ' TRUE ' } }, want: SEED },
  { name: 'other prefix is ignored', pod: { annotations: { 'other.io/register': 'true', 'other.io/port': '86' } }, want: 'ignored' },
  {
    name: 'configurable prefix',
    cfg: { annotationPrefix: 'reg.example.com/' },
    pod: { annotations: { 'reg.example.com/register': 'true', 'reg.example.com/port': '86' } },
    want: SEED,
  },
  { name: 'ignored pod with broken annotations stays ignored', pod: { ann: { register: 'no', port: 'x' } }, want: 'ignored' },

  // --- service
  { name: 'service annotation wins over labels', pod: { ann: { service: 'shop' } }, want: [['/shop_PRE/172.18.100.31-86', '172.18.100.31:86']] },
  {
    name: 'service from app.kubernetes.io/name before app',
    pod: { labels: { 'app.kubernetes.io/name': 'cart', app: 'search' } },
    want: [['/cart_PRE/172.18.100.31-86', '172.18.100.31:86']],
  },
  { name: 'service from app label', pod: { labels: { app: 'search' } }, want: SEED },
  { name: 'empty name label falls back to app', pod: { labels: { 'app.kubernetes.io/name': '', app: 'search' } }, want: SEED },
  { name: 'no service anywhere', pod: { labels: {} }, want: { invalid: [/no service name.*etcd-registrar\.io\/service/] } },
  { name: 'empty service annotation', pod: { ann: { service: '' } }, want: { invalid: [/etcd-registrar\.io\/service.*"" is empty/] } },
  { name: 'service ..', pod: { ann: { service: '..' } }, want: { invalid: [/service name "\.\." must start with a letter or digit/] } },
  { name: 'service .', pod: { ann: { service: '.' } }, want: { invalid: [/service name "\."/] } },
  { name: 'service with slash', pod: { ann: { service: 'a/b' } }, want: { invalid: [/service name "a\/b" may contain only/] } },
  { name: 'service ../../etc', pod: { ann: { service: '../../etc' } }, want: { invalid: [/service name/] } },
  { name: 'service with space', pod: { ann: { service: 'a b' } }, want: { invalid: [/service name "a b"/] } },
  { name: 'service with newline escaped in message', pod: { ann: { service: 'a\nb' } }, want: { invalid: [/"a\\u\{a\}b"/] } },
  { name: 'service with NUL', pod: { ann: { service: 'a\u0000b' } }, want: { invalid: [/"a\\u\{0\}b"/] } },
  { name: 'service unicode', pod: { ann: { service: 'sérvice' } }, want: { invalid: [/service name "sérvice" may contain only/] } },
  { name: 'service leading dash', pod: { ann: { service: '-x' } }, want: { invalid: [/must start with a letter or digit/] } },
  { name: 'service 63 chars ok', pod: { ann: { service: 'a'.repeat(63) } }, want: [[`/${'a'.repeat(63)}_PRE/172.18.100.31-86`, '172.18.100.31:86']] },
  { name: 'service 64 chars', pod: { ann: { service: 'a'.repeat(64) } }, want: { invalid: [/longer than 63/] } },
  {
    name: 'huge service value truncated in message',
    pod: { ann: { service: 'x/'.repeat(5000) } },
    want: { invalid: [/… \(10000 chars\)/] },
  },
  { name: 'service with dots, dashes, underscores', pod: { ann: { service: 'my_app.v2-x' } }, want: [['/my_app.v2-x_PRE/172.18.100.31-86', '172.18.100.31:86']] },
  { name: 'invalid app label names the label', pod: { labels: { app: 'a b' } }, want: { invalid: [/^label app: service name "a b"/] } },

  // --- environment
  { name: 'environment annotation overrides', pod: { ann: { environment: 'PROD' } }, want: [['/search_PROD/172.18.100.31-86', '172.18.100.31:86']] },
  { name: 'no environment anywhere', cfg: { environment: '' }, want: { invalid: [/no environment.*etcd-registrar\.io\/environment/] } },
  { name: 'environment from annotation when no default', cfg: { environment: '' }, pod: { ann: { environment: 'DEV' } }, want: [['/search_DEV/172.18.100.31-86', '172.18.100.31:86']] },
  { name: 'empty environment annotation', pod: { ann: { environment: '' } }, want: { invalid: [/environment "" is empty/] } },
  { name: 'environment ..', pod: { ann: { environment: '..' } }, want: { invalid: [/environment "\.\."/] } },
  { name: 'environment with slash', pod: { ann: { environment: 'x/../../y' } }, want: { invalid: [/environment "x\/\.\.\/\.\.\/y"/] } },
  { name: 'environment with tab', pod: { ann: { environment: 'P\tRE' } }, want: { invalid: [/environment "P\\u\{9\}RE"/] } },
  { name: 'environment with the service separator', pod: { ann: { environment: 'PRE_EU' } }, want: { invalid: [/must not contain "_"/] } },
  {
    name: 'environment with _ allowed when the template separates by /',
    cfg: { keyTemplate: '/{service}/{environment}/{ip}-{port}' },
    pod: { ann: { environment: 'PRE_EU' } },
    want: [['/search/PRE_EU/172.18.100.31-86', '172.18.100.31:86']],
  },
  { name: 'environment 64 chars', pod: { ann: { environment: 'E'.repeat(64) } }, want: { invalid: [/longer than 63/] } },
  {
    name: 'environment not needed when templates do not use it',
    cfg: { environment: '', keyTemplate: '/{service}/{ip}-{port}' },
    want: [['/search/172.18.100.31-86', '172.18.100.31:86']],
  },

  // --- port
  { name: 'missing port', pod: { annotations: { 'etcd-registrar.io/register': 'true' } }, want: { invalid: [/missing annotation etcd-registrar\.io\/port/] } },
  { name: 'empty port', pod: { ann: { port: '' } }, want: { invalid: [/empty port entry/] } },
  { name: 'non-numeric port', pod: { ann: { port: '86a' } }, want: { invalid: [/"86a" is neither a port number nor a named container port/] } },
  { name: 'port 0', pod: { ann: { port: '0' } }, want: { invalid: [/port "0" is out of range \(1-65535\)/] } },
  { name: 'port 65536', pod: { ann: { port: '65536' } }, want: { invalid: [/port "65536" is out of range/] } },
  { name: 'port 99999999999999999999', pod: { ann: { port: '99999999999999999999' } }, want: { invalid: [/out of range/] } },
  { name: 'port -1', pod: { ann: { port: '-1' } }, want: { invalid: [/"-1" is neither a port number nor a named container port/] } },
  { name: 'port 1.5', pod: { ann: { port: '1.5' } }, want: { invalid: [/"1\.5" is neither a port number/] } },
  { name: 'port 65535', pod: { ann: { port: '65535' } }, want: [['/search_PRE/172.18.100.31-65535', '172.18.100.31:65535']] },
  { name: 'port 1', pod: { ann: { port: '1' } }, want: [['/search_PRE/172.18.100.31-1', '172.18.100.31:1']] },
  { name: 'leading zeros normalized', pod: { ann: { port: '0086' } }, want: SEED },
  { name: 'spaces trimmed', pod: { ann: { port: ' 86 ' } }, want: SEED },
  { name: 'named port', pod: { ann: { port: 'http' } }, want: [['/search_PRE/172.18.100.31-8080', '172.18.100.31:8080']] },
  { name: 'named port starting with a digit', pod: { ann: { port: '8http' }, namedPorts: { '8http': 8081 } }, want: [['/search_PRE/172.18.100.31-8081', '172.18.100.31:8081']] },
  { name: 'named port with an invalid number is unknown', pod: { ann: { port: 'bad' }, namedPorts: { bad: 70000 } }, want: { invalid: [/"bad" is neither/] } },
  { name: 'unknown named port lists known ones', pod: { ann: { port: 'grpc' } }, want: { invalid: [/"grpc" is neither a port number nor a named container port \(known: "http, metrics"\)/] } },
  { name: 'unknown named port, pod has none', pod: { ann: { port: 'grpc' }, namedPorts: {} }, want: { invalid: [/the pod has no named ports/] } },
  { name: 'named port __proto__ is not found via prototype', pod: { ann: { port: '__proto__' } }, want: { invalid: [/"__proto__" is neither a port number nor a named container port/] } },
  { name: 'named port constructor', pod: { ann: { port: 'constructor' } }, want: { invalid: [/"constructor" is neither a port number nor a named container port/] } },
  {
    name: 'comma list',
    pod: { ann: { port: '86,9090' } },
    want: [
      ['/search_PRE/172.18.100.31-86', '172.18.100.31:86'],
      ['/search_PRE/172.18.100.31-9090', '172.18.100.31:9090'],
    ],
  },
  {
    name: 'comma list with spaces, named ports and duplicates',
    pod: { ann: { port: ' 86 , http,8080, metrics ,86' } },
    want: [
      ['/search_PRE/172.18.100.31-86', '172.18.100.31:86'],
      ['/search_PRE/172.18.100.31-8080', '172.18.100.31:8080'],
      ['/search_PRE/172.18.100.31-9090', '172.18.100.31:9090'],
    ],
  },
  { name: 'comma list with an empty entry', pod: { ann: { port: '86,,9090' } }, want: { invalid: [/empty port entry/] } },
  { name: 'trailing comma', pod: { ann: { port: '86,' } }, want: { invalid: [/empty port entry/] } },
  { name: 'comma list with one bad entry', pod: { ann: { port: '86,x' } }, want: { invalid: [/"x" is neither a port number nor a named container port/] } },
  {
    name: '64 ports allowed',
    pod: { ann: { port: Array.from({ length: 64 }, (_, i) => String(i + 1)).join(',') } },
    want: Array.from({ length: 64 }, (_, i) => [`/search_PRE/172.18.100.31-${String(i + 1)}`, `172.18.100.31:${String(i + 1)}`] as const),
  },
  { name: '65 ports refused', pod: { ann: { port: Array.from({ length: 65 }, (_, i) => String(i + 1)).join(',') } }, want: { invalid: [/65 ports listed, at most 64/] } },
  { name: '10000 ports refused', pod: { ann: { port: '1,'.repeat(9999) + '1' } }, want: { invalid: [/10000 ports listed/] } },

  // --- address
  { name: 'address pod', pod: { ann: { address: 'pod' } }, want: SEED },
  { name: 'address host uses hostIPs', pod: { ann: { address: 'host' } }, want: [['/search_PRE/10.0.0.1-86', '10.0.0.1:86']] },
  { name: 'address Host tolerated', pod: { ann: { address: ' Host ' } }, want: [['/search_PRE/10.0.0.1-86', '10.0.0.1:86']] },
  { name: 'address host falls back to hostIP', pod: { ann: { address: 'host' }, hostIPs: [], hostIP: '10.0.0.9' }, want: [['/search_PRE/10.0.0.9-86', '10.0.0.9:86']] },
  { name: 'address host without host IP yet', pod: { ann: { address: 'host' }, hostIPs: [], hostIP: '' }, want: [], serving: false },
  { name: 'unknown address mode', pod: { ann: { address: 'node' } }, want: { invalid: [/etcd-registrar\.io\/address: "node" must be "pod" or "host"/] } },
  { name: 'empty address mode', pod: { ann: { address: '' } }, want: { invalid: [/address: "" must be/] } },

  // --- IPv6 and dual-stack
  { name: 'IPv6 pod: raw IP in key, bracketed in value', pod: { podIPs: ['fd00::1'] }, want: [['/search_PRE/fd00::1-86', '[fd00::1]:86']] },
  { name: 'dual-stack default = primary family only (v4 first)', pod: { podIPs: ['10.1.0.5', 'fd00::5'] }, want: [['/search_PRE/10.1.0.5-86', '10.1.0.5:86']] },
  { name: 'dual-stack default = primary family only (v6 first)', pod: { podIPs: ['fd00::5', '10.1.0.5'] }, want: [['/search_PRE/fd00::5-86', '[fd00::5]:86']] },
  {
    name: 'ip-families ipv4,ipv6 on dual-stack',
    pod: { podIPs: ['fd00::5', '10.1.0.5'], ann: { 'ip-families': 'ipv6, IPv4' } },
    want: [
      ['/search_PRE/10.1.0.5-86', '10.1.0.5:86'],
      ['/search_PRE/fd00::5-86', '[fd00::5]:86'],
    ],
  },
  { name: 'ip-families ipv6 only', pod: { podIPs: ['10.1.0.5', 'fd00::5'], ann: { 'ip-families': 'ipv6' } }, want: [['/search_PRE/fd00::5-86', '[fd00::5]:86']] },
  {
    name: 'ip-families asks for a family the pod lacks',
    pod: { podIPs: ['10.1.0.5'], ann: { 'ip-families': 'ipv4,ipv6' } },
    want: { invalid: [/asks for ipv6 but the pod has no IPv6 pod address/] },
  },
  { name: 'ip-families missing family is fine while the pod has no IP', pod: { podIPs: [], ann: { 'ip-families': 'ipv6' } }, want: [], serving: false },
  { name: 'ip-families unknown', pod: { ann: { 'ip-families': 'ipv5' } }, want: { invalid: [/"ipv5" is not an IP family/] } },
  { name: 'ip-families empty', pod: { ann: { 'ip-families': '' } }, want: { invalid: [/"" is not an IP family/] } },
  {
    name: 'dual-stack host address',
    pod: { ann: { address: 'host', 'ip-families': 'ipv4,ipv6' }, hostIPs: ['10.0.0.1', 'fd00:1::1'] },
    want: [
      ['/search_PRE/10.0.0.1-86', '10.0.0.1:86'],
      ['/search_PRE/fd00:1::1-86', '[fd00:1::1]:86'],
    ],
  },
  {
    name: 'ports x families, port-major',
    pod: { podIPs: ['10.1.0.5', 'fd00::5'], ann: { port: '86,http', 'ip-families': 'ipv4,ipv6' } },
    want: [
      ['/search_PRE/10.1.0.5-86', '10.1.0.5:86'],
      ['/search_PRE/fd00::5-86', '[fd00::5]:86'],
      ['/search_PRE/10.1.0.5-8080', '10.1.0.5:8080'],
      ['/search_PRE/fd00::5-8080', '[fd00::5]:8080'],
    ],
  },
  { name: 'IPv4-mapped IPv6', pod: { podIPs: ['::ffff:10.1.2.3'] }, want: [['/search_PRE/::ffff:10.1.2.3-86', '[::ffff:10.1.2.3]:86']] },
  { name: 'garbage pod IP', pod: { podIPs: ['10.0.0.256'] }, want: { invalid: [/pod IP "10\.0\.0\.256" is not a valid IP address/] } },
  { name: 'pod IP with slash', pod: { podIPs: ['../..'] }, want: { invalid: [/pod IP "\.\.\/\.\." is not a valid IP/] } },
  { name: 'pod IP with zone', pod: { podIPs: ['fe80::1%eth0'] }, want: { invalid: [/not a valid IP/] } },

  // --- serving
  { name: 'not ready: registrations known, not serving', pod: { ready: false }, want: SEED, serving: false },
  { name: 'terminating', pod: { terminating: true }, want: SEED, serving: false },
  { name: 'Succeeded', pod: { phase: 'Succeeded' }, want: SEED, serving: false },
  { name: 'Failed', pod: { phase: 'Failed' }, want: SEED, serving: false },
  { name: 'Pending but Ready (odd) still serves', pod: { phase: 'Pending' }, want: SEED, serving: true },
  { name: 'no IP yet', pod: { podIPs: [], ready: false, phase: 'Pending' }, want: [], serving: false },
  { name: 'ready without IP is not serving', pod: { podIPs: [] }, want: [], serving: false },

  // --- templates
  {
    name: 'key root and template with namespace/pod/node',
    cfg: { keyRoot: '/registry', keyTemplate: '/registry/{namespace}/{service}/{pod}@{node}/{ip}-{port}', valueTemplate: '{service}={ip}:{port}' },
    want: [['/registry/default/search/search-1@node-1/172.18.100.31-86', 'search=172.18.100.31:86']],
  },
  {
    name: 'JSON value with stable key order, raw IPv6 host',
    cfg: { valueFormat: 'json' },
    pod: { podIPs: ['fd00::1'] },
    want: [
      [
        '/search_PRE/fd00::1-86',
        '{"host":"fd00::1","port":86,"service":"search","environment":"PRE","pod":"search-1","namespace":"default","node":"node-1","zone":"zone-a"}',
      ],
    ],
  },
  { name: 'literal braces in value template', cfg: { valueTemplate: '{{{ip}}}' }, want: [['/search_PRE/172.18.100.31-86', '{172.18.100.31}']] },
  {
    name: 'bad config makes opted-in pods invalid',
    cfg: { keyTemplate: '/{service}/{nope}' },
    want: { invalid: [/^controller configuration: key template .*unknown placeholder \{nope\}/] },
  },
  { name: 'bad config does not touch ignored pods', cfg: { keyTemplate: '/{nope}' }, pod: { ann: { register: 'false' } }, want: 'ignored' },
  {
    name: 'illegal pod name used in a template',
    cfg: { keyTemplate: '/{pod}/{ip}-{port}' },
    pod: { name: '..' },
    want: { invalid: [/pod name "\.\." must start with a letter or digit/] },
  },
  {
    name: 'node name used in a template must be set once the pod has an IP',
    cfg: { keyTemplate: '/{node}/{ip}-{port}' },
    pod: { nodeName: '' },
    want: { invalid: [/node name "" is empty/] },
  },
  { name: 'node name unused: no check', pod: { nodeName: '' }, want: SEED },
  {
    name: 'JSON value escapes a strange node name (not in the key)',
    cfg: { valueFormat: 'json' },
    pod: { nodeName: 'n"1' },
    want: [
      [
        '/search_PRE/172.18.100.31-86',
        '{"host":"172.18.100.31","port":86,"service":"search","environment":"PRE","pod":"search-1","namespace":"default","node":"n\\"1","zone":""}',
      ],
    ],
  },
  {
    name: 'JSON value refuses a DEL character that JSON does not escape',
    cfg: { valueFormat: 'json' },
    pod: { nodeName: 'n\u007f' },
    want: { invalid: [/contains control characters/] },
  },
  {
    name: 'a key under a reserved prefix (owner records) is refused',
    cfg: { keyTemplate: '/{service}/{environment}/{ip}-{port}', reservedPrefixes: ['/etcd-registrar/owners'] },
    pod: { ann: { service: 'etcd-registrar', environment: 'owners' } },
    want: { invalid: [/key "\/etcd-registrar\/owners\/172\.18\.100\.31-86" falls under the controller's reserved prefix "\/etcd-registrar\/owners\/"/] },
  },
  {
    name: 'reserved prefixes do not affect other keys',
    cfg: { keyTemplate: '/{service}/{environment}/{ip}-{port}', reservedPrefixes: ['/etcd-registrar/owners/'] },
    pod: { ann: { service: 'etcd-registrar', environment: 'owners2' } },
    want: [['/etcd-registrar/owners2/172.18.100.31-86', '172.18.100.31:86']],
  },
  {
    name: 'all problems reported at once',
    pod: { ann: { service: '..', environment: 'a/b', port: '0', address: 'x' } },
    want: { invalid: [/service name/, /environment "a\/b"/, /port "0"/, /address: "x"/] },
  },

  // --- zones: the node's topology.kubernetes.io/zone label
  {
    name: '{zone} in key and value templates',
    cfg: { keyTemplate: '/{zone}/{service}_{environment}/{ip}-{port}', valueTemplate: '{ip}:{port} {zone}' },
    want: [['/zone-a/search_PRE/172.18.100.31-86', '172.18.100.31:86 zone-a']],
  },
  {
    name: '{zone} of a node without a zone label is refused (no empty key segment)',
    cfg: { keyTemplate: '/{zone}/{ip}-{port}' },
    zones: { 'node-1': '' },
    want: { invalid: [/node "node-1" has no zone label \(topology.kubernetes.io\/zone\), so \{zone\} cannot be filled/] },
  },
  {
    name: 'an unsafe zone never reaches a key',
    cfg: { keyTemplate: '/{zone}/{ip}-{port}' },
    zones: { 'node-1': '..' },
    want: { invalid: [/zone "\.\." of node "node-1" must start with a letter or digit/] },
  },
  {
    name: 'an unsafe zone in a value template is refused too',
    cfg: { valueTemplate: '{zone}:{ip}' },
    zones: { 'node-1': 'a/b' },
    want: { invalid: [/zone "a\/b" of node "node-1" may contain only/] },
  },
  {
    name: 'JSON zone is "" for a node without a zone label (field always present: stable bytes)',
    cfg: { valueFormat: 'json' },
    zones: { 'node-1': '' },
    want: [
      [
        '/search_PRE/172.18.100.31-86',
        '{"host":"172.18.100.31","port":86,"service":"search","environment":"PRE","pod":"search-1","namespace":"default","node":"node-1","zone":""}',
      ],
    ],
  },
  { name: 'zones unused: an unknown node does not matter', zones: {}, want: SEED },
];

describe('mapPod', () => {
  for (const c of cases) it(c.name, () => void check(c));

  it('a mapping needing the zone of an unknown node is pending (not invalid)', () => {
    for (const cfg of [config({ valueFormat: 'json' }), config({ keyTemplate: '/{zone}/{ip}-{port}' })]) {
      assert.deepEqual(mapPod(makePod(), cfg, () => undefined), { kind: 'pending', reason: 'zone of node "node-1" not known yet' });
      assert.equal(mapPod(makePod(), cfg).kind, 'pending', 'no node cache at all');
      // Not scheduled yet (no IP): nothing to wait for.
      assert.deepEqual(mapPod(makePod({ podIPs: [], nodeName: '' }), cfg, () => undefined), { kind: 'valid', registrations: [], serving: false });
      // Annotation problems are reported even while the node is unknown.
      assert.equal(mapPod(makePod({ ann: { port: 'x' } }), cfg, () => undefined).kind, 'invalid');
    }
  });

  it('fills every Registration field', () => {
    const m = mapPod(makePod({ podIPs: ['fd00::1'], ann: { port: 'http' } }), testConfig);
    assert.deepEqual(m, {
      kind: 'valid',
      serving: true,
      registrations: [
        { key: '/search_PRE/fd00::1-8080', value: '[fd00::1]:8080', service: 'search', environment: 'PRE', ip: 'fd00::1', port: 8080 },
      ],
    });
  });

  it('invalid problems name the annotation and never contain raw control characters', () => {
    const m = mapPod(makePod({ ann: { port: '\u0000\u001b[31m\u2028', service: '\u202e' } }), testConfig);
    assert.equal(m.kind, 'invalid');
    if (m.kind !== 'invalid') return;
    for (const p of m.problems) assert.doesNotMatch(p, /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202e]/);
    assert.ok(m.problems.some((p) => p.includes('etcd-registrar.io/port')));
    assert.ok(m.problems.some((p) => p.includes('etcd-registrar.io/service')));
  });

  it('maps 10,000 pods quickly (precompiled templates)', () => {
    const pods = Array.from({ length: 10_000 }, (_, i) =>
      makePod({ uid: `u${String(i)}`, podIPs: [`10.${String(i >> 8)}.${String(i & 255)}.1`], ann: { port: '86,http' } }),
    );
    const t0 = performance.now();
    let n = 0;
    for (const pod of pods) {
      const m = mapPod(pod, testConfig);
      if (m.kind === 'valid') n += m.registrations.length;
    }
    const ms = performance.now() - t0;
    assert.equal(n, 20_000);
    assert.ok(ms < 1000, `took ${String(ms)} ms`);
  });
});

describe('value format skydns (CoreDNS etcd plugin layout)', () => {
  const sky: Partial<MappingConfig> = { valueFormat: 'skydns', dnsZone: 'svc.example.org', dnsTtlSeconds: 1 };
  const cases: Case[] = [
    {
      name: 'one key per port, zone reversed, names lower-cased, dashed IP instance',
      cfg: sky,
      pod: { ann: { port: '86,http', environment: 'PRE', service: 'Search' } },
      want: [
        ['/skydns/org/example/svc/pre/search/172-18-100-31-86', '{"host":"172.18.100.31","port":86,"ttl":1}'],
        ['/skydns/org/example/svc/pre/search/172-18-100-31-8080', '{"host":"172.18.100.31","port":8080,"ttl":1}'],
      ],
      serving: true,
    },
    {
      name: 'IPv6: raw host (CoreDNS answers AAAA), colons dashed in the instance label',
      cfg: sky,
      pod: { podIPs: ['fd00::7'] },
      want: [['/skydns/org/example/svc/pre/search/fd00--7-86', '{"host":"fd00::7","port":86,"ttl":1}']],
    },
    {
      name: 'dual stack: one instance per family',
      cfg: sky,
      pod: { podIPs: ['10.1.0.7', 'fd00::7'], ann: { 'ip-families': 'ipv4,ipv6' } },
      want: [
        ['/skydns/org/example/svc/pre/search/10-1-0-7-86', '{"host":"10.1.0.7","port":86,"ttl":1}'],
        ['/skydns/org/example/svc/pre/search/fd00--7-86', '{"host":"fd00::7","port":86,"ttl":1}'],
      ],
    },
    {
      name: 'default ttl',
      cfg: { valueFormat: 'skydns', dnsZone: 'example.org' },
      want: [['/skydns/org/example/pre/search/172-18-100-31-86', '{"host":"172.18.100.31","port":86,"ttl":5}']],
    },
    {
      name: 'key root containing the zone path',
      cfg: { ...sky, keyRoot: '/skydns/org/example/' },
      want: [['/skydns/org/example/svc/pre/search/172-18-100-31-86', '{"host":"172.18.100.31","port":86,"ttl":1}']],
    },
    { name: 'a dot in the service would split a DNS label', cfg: sky, pod: { ann: { service: 'search.v2' } }, want: { invalid: [/service name "search.v2" contains '.'/] } },
    { name: 'a dot in the environment too', cfg: sky, pod: { ann: { environment: 'pre.eu' } }, want: { invalid: [/environment "pre.eu" contains '.'/] } },
    { name: 'zone not a DNS name', cfg: { ...sky, dnsZone: 'Example.ORG' }, want: { invalid: [/controller configuration: DNS zone "Example.ORG" has the label "Example"/] } },
    { name: 'key root outside /skydns', cfg: { ...sky, keyRoot: '/registry/' }, want: { invalid: [/must start with the key root "\/registry\/"/] } },
    { name: 'ttl 0', cfg: { ...sky, dnsTtlSeconds: 0 }, want: { invalid: [/DNS TTL "0" must be whole seconds/] } },
    { name: 'not Ready: keys known, not serving', cfg: sky, pod: { ready: false }, want: [['/skydns/org/example/svc/pre/search/172-18-100-31-86', '{"host":"172.18.100.31","port":86,"ttl":1}']], serving: false },
  ];
  for (const c of cases) it(c.name, () => {
    check(c);
  });
});
