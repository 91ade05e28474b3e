import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, envName, helpText, parseConfig, parseDurationMs, parseListenAddress, type Config } from './config.ts';

function configOf(argv: string[], env: Record<string, string> = {}): Config {
  const result = parseConfig(argv, env);
  assert.equal(result.kind, 'config');
  return result.config;
}

describe('parseConfig', () => {
  it('applies the documented defaults', () => {
    const config = configOf(['run']);
    assert.equal(config.command, 'run');
    assert.deepEqual(config.etcdEndpoints, ['http://127.0.0.1:2379']);
    assert.equal(config.keyTemplate, '/{service}_{environment}/{ip}-{port}');
    assert.equal(config.valueTemplate, '{ip}:{port}');
    assert.equal(config.leaseTtlSeconds, 30);
    assert.equal(config.reconcileIntervalMs, 60_000);
    assert.equal(config.policy, 'sync');
    assert.equal(config.annotationPrefix, 'etcd-registrar.io/');
    assert.deepEqual(config.namespaces, []);
    assert.equal(config.dryRun, false);
    assert.equal(config.leaderElection, true);
    assert.equal(config.electionTtlSeconds, 5);
    assert.equal(config.serviceGrants, 'open');
    assert.equal(config.staticGrants.size, 0);
    assert.equal(config.kubeContentType, 'protobuf');
  });

  it('parses the content type of pod, node and namespace intake', () => {
    assert.equal(configOf(['run', '--kube-content-type', 'json']).kubeContentType, 'json');
    assert.equal(configOf(['run'], { ETCD_REGISTRAR_KUBE_CONTENT_TYPE: 'json' }).kubeContentType, 'json');
  });

  it('parses the service grants mode and the static grants', () => {
    const config = configOf(['run', '--service-grants', 'strict', '--grants', 'team-a=search,web; platform=*']);
    assert.equal(config.serviceGrants, 'strict');
    assert.deepEqual([...config.staticGrants], [['team-a', ['search', 'web']], ['platform', ['*']]]);
    assert.equal(configOf(['run'], { ETCD_REGISTRAR_SERVICE_GRANTS: 'off' }).serviceGrants, 'off');
  });

  it('reads every flag from its environment variable, and flags win', () => {
    const env = { ETCD_REGISTRAR_ENVIRONMENT: 'PRE', ETCD_REGISTRAR_LEASE_TTL: '10s', ETCD_REGISTRAR_NAMESPACES: 'a, b', ETCD_REGISTRAR_DRY_RUN: 'true' };
    const config = configOf(['run', '--environment', 'PROD'], env);
    assert.equal(config.environment, 'PROD');
    assert.equal(config.leaseTtlSeconds, 10);
    assert.deepEqual(config.namespaces, ['a', 'b']);
    assert.equal(config.dryRun, true);
    assert.equal(envName('etcd-endpoints'), 'ETCD_REGISTRAR_ETCD_ENDPOINTS');
  });

  it('normalises --key-root once: the mapping and the registry get the same root', () => {
    assert.equal(configOf(['run', '--key-root', '/registry', '--key-template', '/registry/{service}/{ip}-{port}']).keyRoot, '/registry/');
    assert.equal(configOf(['run']).keyRoot, '/');
  });

  it('parses --value-format skydns with its zone and TTL', () => {
    const config = configOf(['run', '--value-format', 'skydns', '--dns-zone', 'svc.example.org', '--dns-ttl', '1s']);
    assert.equal(config.valueFormat, 'skydns');
    assert.equal(config.dnsZone, 'svc.example.org');
    assert.equal(config.dnsTtlSeconds, 1);
    assert.equal(configOf(['run', '--value-format', 'skydns', '--dns-zone', 'example.org', '--key-root', '/skydns/org']).keyRoot, '/skydns/org/');
    assert.equal(configOf(['run'], { ETCD_REGISTRAR_VALUE_FORMAT: 'skydns', ETCD_REGISTRAR_DNS_ZONE: 'example.org' }).dnsTtlSeconds, 5);
    assert.equal(configOf(['run']).dnsZone, undefined);
  });

  it('returns help for no command and --help', () => {
    assert.equal(parseConfig([], {}).kind, 'help');
    assert.equal(parseConfig(['run', '--help'], {}).kind, 'help');
    assert.match(helpText(), /--etcd-endpoints value/);
  });

  const bad: Array<[string, string[], Record<string, string>, RegExp]> = [
    ['unknown command', ['serve'], {}, /unknown command "serve"/],
    ['unknown flag', ['run', '--nope'], {}, /Unknown option '--nope'/],
    ['bad duration', ['run', '--lease-ttl', '10 minutes'], {}, /--lease-ttl: "10 minutes" is not a duration/],
    ['sub-second ttl', ['run', '--lease-ttl', '1500ms'], {}, /whole seconds/],
    ['bad policy', ['run', '--policy', 'delete-all'], {}, /--policy: "delete-all" is not one of sync, upsert-only/],
    ['bad grants mode', ['run', '--service-grants', 'lax'], {}, /--service-grants: "lax" is not one of off, open, strict/],
    ['bad content type', ['run', '--kube-content-type', 'yaml'], {}, /--kube-content-type: "yaml" is not one of json, protobuf/],
    ['bad grants', ['run', '--grants', 'team-a:search'], {}, /--grants: "team-a:search" must be namespace=service/],
    ['bad granted service', ['run', '--grants', 'team-a=../x'], {}, /--grants: namespace team-a: "..\/x" is not a service name/],
    ['bad endpoint', ['run', '--etcd-endpoints', 'etcd:2379'], {}, /must use http:\/\/ or https:\/\//],
    ['bad share', ['run', '--max-delete-share', '2'], {}, /from 0 to 1/],
    ['cert without key', ['run', '--etcd-cert-file', '/c.pem'], {}, /must be given together/],
    ['bad owner', ['run', '--owner-id', '../x'], {}, /--owner-id/],
    ['bad env boolean', ['run'], { ETCD_REGISTRAR_DRY_RUN: 'maybe' }, /--dry-run \(ETCD_REGISTRAR_DRY_RUN\): "maybe" is not a boolean/],
    ['reconcile without once', ['reconcile'], {}, /reconcile needs --once/],
    ['flag of another command', ['list', '--once'], {}, /--once does not apply to the list command/],
    ['bad metrics address', ['run', '--metrics-address', 'localhost'], {}, /must be host:port/],
    ['bad leader-election', ['run', '--leader-election', 'sometimes'], {}, /--leader-election \(ETCD_REGISTRAR_LEADER_ELECTION\): "sometimes" is not a boolean/],
    ['short election ttl', ['run', '--election-ttl', '1s'], {}, /--election-ttl: 1s must be whole seconds, at least 2s/],
    ['bad batch', ['run', '--max-batch-keys', '0'], {}, /from 1 to 100000/],
    ['skydns without zone', ['run', '--value-format', 'skydns'], {}, /--dns-zone is required with --value-format skydns/],
    ['zone without skydns', ['run', '--dns-zone', 'example.org'], {}, /--dns-zone applies only to --value-format skydns/],
    ['zone from env without skydns', ['run'], { ETCD_REGISTRAR_DNS_ZONE: 'example.org' }, /--dns-zone applies only to --value-format skydns/],
    ['ttl without skydns', ['run', '--value-format', 'json', '--dns-ttl', '1s'], {}, /--dns-ttl applies only to --value-format skydns/],
    ['upper-case zone', ['run', '--value-format', 'skydns', '--dns-zone', 'Example.org'], {}, /--dns-zone: "Example.org" has the label "Example"/],
    ['zone with empty label', ['run', '--value-format', 'skydns', '--dns-zone', 'example..org'], {}, /--dns-zone: .* has an empty label/],
    ['zone with trailing dot', ['run', '--value-format', 'skydns', '--dns-zone', 'example.org.'], {}, /--dns-zone: .* has an empty label/],
    ['zone with slash', ['run', '--value-format', 'skydns', '--dns-zone', 'a/b.org'], {}, /--dns-zone: .* has the label "a\/b"/],
    ['sub-second dns ttl', ['run', '--value-format', 'skydns', '--dns-zone', 'example.org', '--dns-ttl', '500ms'], {}, /--dns-ttl: "500ms" must be whole seconds/],
    ['key template with skydns', ['run', '--value-format', 'skydns', '--dns-zone', 'example.org', '--key-template', '/{service}/{ip}-{port}'], {}, /--key-template does not apply to --value-format skydns/],
    ['key root outside the zone path', ['run', '--value-format', 'skydns', '--dns-zone', 'example.org', '--key-root', '/registry'], {}, /--key-root: "\/registry" must be a prefix of \/skydns\/org\/example\//],
    ['key root below the zone path', ['run', '--value-format', 'skydns', '--dns-zone', 'example.org', '--key-root', '/skydns/org/example/pre'], {}, /--key-root: .* must be a prefix of/],
  ];
  // Mapping settings are validated in the same pass, for every command, naming the flag.
  for (const command of [['run'], ['reconcile', '--once'], ['list']]) {
    const c = command.join(' ');
    bad.push(
      [`${c}: relative key root`, [...command, '--key-root', 'registry'], {}, /^--key-root: "registry" must start with '\/'/],
      [`${c}: key root with a '..' segment`, [...command, '--key-root', '/a/../b', '--key-template', '/a/../b/{service}/{ip}-{port}'], {}, /^--key-root: /],
      [`${c}: bad annotation prefix`, [...command, '--annotation-prefix', 'Etcd Registrar'], {}, /^--annotation-prefix: annotation prefix "Etcd Registrar" must be a lower-case DNS subdomain/],
      [`${c}: key template without {port}`, [...command, '--key-template', '/{service}/{ip}'], {}, /^--key-template: key template .* must contain \{ip\} and \{port\}/],
      [`${c}: key template outside the root`, [...command, '--key-root', '/registry', '--key-template', '/{service}/{ip}-{port}'], {}, /^--key-template: key template .* must start with the key root "\/registry\/"/],
      [`${c}: empty value template`, [...command, '--value-template', ''], {}, /^--value-template: value template is empty/],
      [`${c}: bad environment`, [...command, '--environment', '../PRE'], {}, /^--environment: environment "..\/PRE"/],
    );
  }
  for (const [name, argv, env, message] of bad) {
    it(`rejects ${name} with one clear line`, () => {
      assert.throws(() => parseConfig(argv, env), (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.match(error.message, message);
        assert.ok(!error.message.includes('\n'), 'one line');
        return true;
      });
    });
  }
});

describe('parseDurationMs', () => {
  for (const [text, ms] of [['500ms', 500], ['30s', 30_000], ['1.5m', 90_000], ['2h', 7_200_000], ['45', 45_000]] as const) {
    it(`${text} = ${ms} ms`, () => assert.equal(parseDurationMs('x', text), ms));
  }
});

describe('parseListenAddress', () => {
  it('parses host:port, :port and [v6]:port', () => {
    assert.deepEqual(parseListenAddress('127.0.0.1:9090'), { host: '127.0.0.1', port: 9090 });
    assert.deepEqual(parseListenAddress(':8080'), { host: '0.0.0.0', port: 8080 });
    assert.deepEqual(parseListenAddress('[::1]:0'), { host: '::1', port: 0 });
  });
});
