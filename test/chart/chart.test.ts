// Static tests of the Helm chart: lint, rendering with the defaults and with every value set,
// the values schema, least-privilege RBAC, the controller accepting the rendered arguments,
// the Grafana dashboard covering the metrics, and deploy/ not drifting from the chart.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { flagSpecs, parseConfig } from '../../src/config.ts';
import { manifestsPath, renderManifests } from '../../scripts/render-manifests.ts';
import { defaultImageTag } from '../../scripts/image.ts';
import { execFileSync } from 'node:child_process';
import {
  chartDir,
  controllerContainer,
  deploymentSpec,
  find,
  helm,
  helmOk,
  packagedChart,
  parseManifests,
  repoRoot,
  template,
  templateArgs,
  valuesAllPath,
  type Container,
  type K8sObject,
} from './helm.ts';

const kinds = (objects: readonly K8sObject[]): string[] => objects.map((o) => `${o.kind}/${o.metadata.name}`).sort();

/** "--name=value" / "--name" arguments as a map (flags only, after the command). */
function argMap(args: readonly string[]): Map<string, string> {
  const map = new Map<string, string>();
  for (const arg of args.slice(1)) {
    const match = /^--([a-z-]+)(?:=(.*))?$/s.exec(arg);
    assert.ok(match !== null, `argument ${JSON.stringify(arg)} is not --flag or --flag=value`);
    map.set(match[1] ?? '', match[2] ?? 'true');
  }
  return map;
}

interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  resourceNames?: string[];
}

const expectedRules: Rule[] = [
  { apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch'] },
  { apiGroups: ['events.k8s.io'], resources: ['events'], verbs: ['create', 'patch'] },
];
/** Service grants read the Namespaces' allowed-services annotation (unless serviceGrants.mode is off). */
const namespaceRule: Rule = { apiGroups: [''], resources: ['namespaces'], verbs: ['get', 'list', 'watch'] };
/** Node zones (JSON value format or {zone} in a template) read the Nodes' zone label. */
const nodeRule: Rule = { apiGroups: [''], resources: ['nodes'], verbs: ['get', 'list', 'watch'] };

function assertLeastPrivilege(role: K8sObject, expected: readonly Rule[] = expectedRules): void {
  const rules = role['rules'] as Rule[];
  assert.deepEqual(rules, expected, `${role.kind}/${role.metadata.name} rules`);
  for (const rule of rules) {
    for (const field of [rule.apiGroups, rule.resources, rule.verbs]) assert.ok(!field.includes('*'), 'no wildcards');
    assert.ok(!rule.resources.includes('secrets'), 'no secrets');
  }
}

describe('chart: lint and render', () => {
  test('helm lint --strict passes with the defaults and with every value set', async () => {
    for (const extra of [[], ['--values', valuesAllPath]]) {
      const result = await helm(['lint', chartDir, '--strict', ...extra]);
      assert.equal(result.code, 0, result.stdout + result.stderr);
      assert.match(result.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
    }
  });

  test('defaults: two replicas with leader election, the expected objects, recommended labels, selectors on name+instance only', async () => {
    const objects = await template({ release: 'reg' });
    assert.deepEqual(kinds(objects), [
      'ClusterRole/reg-etcd-registrar',
      'ClusterRoleBinding/reg-etcd-registrar',
      'Deployment/reg-etcd-registrar',
      'Pod/reg-etcd-registrar-test-readyz',
      'PodDisruptionBudget/reg-etcd-registrar',
      'Service/reg-etcd-registrar-metrics',
      'ServiceAccount/reg-etcd-registrar',
    ]);
    const selector = { 'app.kubernetes.io/name': 'etcd-registrar', 'app.kubernetes.io/instance': 'reg' };
    for (const object of objects.filter((o) => o.kind !== 'Pod')) {
      const labels = object.metadata.labels ?? {};
      assert.equal(labels['app.kubernetes.io/name'], 'etcd-registrar', `${object.kind} name label`);
      assert.equal(labels['app.kubernetes.io/instance'], 'reg');
      assert.equal(labels['app.kubernetes.io/version'], '0.1.0');
      assert.equal(labels['app.kubernetes.io/managed-by'], 'Helm');
      assert.equal(labels['helm.sh/chart'], 'etcd-registrar-0.1.0');
    }
    const spec = deploymentSpec(objects);
    assert.equal(spec.replicas, 2);
    const args = argMap(spec.template.spec.containers[0]?.args ?? []);
    assert.equal(args.get('leader-election'), 'true');
    assert.equal(args.get('election-ttl'), '5s');
    assert.deepEqual(spec.selector.matchLabels, selector);
    assert.deepEqual(find(objects, 'Service')['spec'] && (find(objects, 'Service')['spec'] as { selector: unknown }).selector, selector);
    // The test pod must not be selected by the metrics Service.
    const testPod = find(objects, 'Pod');
    assert.notEqual(testPod.metadata.labels?.['app.kubernetes.io/name'], 'etcd-registrar');
    assert.equal(testPod.metadata.annotations?.['helm.sh/hook'], 'test');
  });

  test('defaults: hardened pod, probes on /healthz and /readyz, image from appVersion', async () => {
    const objects = await template();
    const spec = deploymentSpec(objects);
    const pod = spec.template.spec;
    const container = controllerContainer(objects);
    assert.equal(container.image, 'ghcr.io/etcd-registrar/etcd-registrar:0.1.0');
    assert.equal(pod.serviceAccountName, 'test-etcd-registrar');
    assert.equal(pod.automountServiceAccountToken, true);
    assert.equal(pod['terminationGracePeriodSeconds'], 30);
    assert.deepEqual(pod.securityContext?.['seccompProfile'], { type: 'RuntimeDefault' });
    assert.equal(pod.securityContext?.['runAsNonRoot'], true);
    const sc = container.securityContext ?? {};
    assert.equal(sc['runAsNonRoot'], true);
    assert.equal(sc['runAsUser'], 65532);
    assert.equal(sc['readOnlyRootFilesystem'], true);
    assert.equal(sc['allowPrivilegeEscalation'], false);
    assert.deepEqual(sc['capabilities'], { drop: ['ALL'] });
    assert.deepEqual(sc['seccompProfile'], { type: 'RuntimeDefault' });
    assert.deepEqual(container.livenessProbe?.httpGet, { path: '/healthz', port: 'http-metrics' });
    assert.deepEqual(container.readinessProbe?.httpGet, { path: '/readyz', port: 'http-metrics' });
    assert.deepEqual(container.ports?.map((p) => [p.name, p.containerPort]), [['http-metrics', 8080]]);
    assert.ok(container.resources !== undefined);
    assert.equal(container.volumeMounts, undefined, 'no secrets mounted unless TLS/auth are enabled');
  });

  test('defaults: the arguments are exactly the controller defaults and parse with src/config.ts', async () => {
    const container = controllerContainer(await template());
    const args = container.args ?? [];
    assert.equal(args[0], 'run');
    const parsed = parseConfig(args, {});
    assert.equal(parsed.kind, 'config');
    const defaults = parseConfig(['run'], {});
    assert.equal(defaults.kind, 'config');
    if (parsed.kind !== 'config' || defaults.kind !== 'config') return;
    // Same configuration as the controller's own defaults, except the etcd endpoint.
    assert.deepEqual({ ...parsed.config, etcdEndpoints: [] }, { ...defaults.config, etcdEndpoints: [] });
    assert.deepEqual(parsed.config.etcdEndpoints, ['http://etcd:2379']);
  });

  test('every value set: the arguments parse, and every run flag of src/config.ts is reachable from values', async () => {
    const objects = await template({ release: 'all', valuesFiles: [valuesAllPath] });
    const container = controllerContainer(objects);
    const args = container.args ?? [];
    const flags = argMap(args);
    const known = new Set(flagSpecs.map((s) => s.name));
    for (const flag of flags.keys()) assert.ok(known.has(flag), `--${flag} is a controller flag`);
    // Flags a chart cannot or must not set: the in-cluster config is used, and these belong to other commands.
    const notForTheChart = new Set(['kubeconfig', 'once', 'output', 'etcd-username']);
    // Rendered only with valueFormat skydns instead of the templates (next test).
    for (const flag of ['dns-zone', 'dns-ttl']) notForTheChart.add(flag);
    const missing = flagSpecs
      .filter((s) => s.commands === undefined || s.commands.includes('run'))
      .map((s) => s.name)
      .filter((name) => !notForTheChart.has(name) && !flags.has(name));
    assert.deepEqual(missing, [], 'run flags with no chart value');
    // etcd-username comes from the Secret as an environment variable when usernameKey is set.
    const usernameEnv = container.env?.find((e) => e.name === 'ETCD_REGISTRAR_ETCD_USERNAME');
    assert.deepEqual(usernameEnv?.valueFrom, { secretKeyRef: { name: 'etcd-credentials', key: 'etcd-username' } });
    const parsed = parseConfig(args, { ETCD_REGISTRAR_ETCD_USERNAME: 'registrar' });
    assert.equal(parsed.kind, 'config');
    if (parsed.kind !== 'config') return;
    assert.equal(parsed.config.environment, 'PRE');
    assert.equal(parsed.config.ownerId, 'cluster-a');
    assert.equal(parsed.config.leaseTtlSeconds, 15);
    assert.equal(parsed.config.reconcileIntervalMs, 120_000);
    assert.deepEqual(parsed.config.namespaces, ['team-a', 'team-b']);
    assert.equal(parsed.config.policy, 'upsert-only');
    assert.equal(parsed.config.valueFormat, 'json');
    assert.equal(parsed.config.kubeContentType, 'json');
    assert.equal(parsed.config.maxDeleteShare, 0.25);
    assert.equal(parsed.config.forceDeletes, true);
    assert.equal(parsed.config.dryRun, true);
    assert.equal(parsed.config.metricsAddress, '[::]:9090');
    assert.equal(parsed.config.logLevel, 'trace', 'extraArgs come last and win');
    assert.equal(parsed.config.etcdCaFile, '/etc/etcd-registrar/etcd-ca/ca.crt');
    assert.equal(parsed.config.etcdCertFile, '/etc/etcd-registrar/etcd-tls/tls.crt');
    assert.equal(parsed.config.etcdKeyFile, '/etc/etcd-registrar/etcd-tls/tls.key');
    assert.equal(parsed.config.etcdPasswordFile, '/etc/etcd-registrar/etcd-auth/password');
    assert.equal(parsed.config.etcdServerName, 'etcd.registry.svc');
    assert.equal(parsed.config.etcdUsername, 'registrar');
    assert.equal(parsed.config.serviceGrants, 'strict');
    assert.equal(flags.get('grants'), 'platform=*;team-a=search,web');
    assert.deepEqual([...parsed.config.staticGrants], [['platform', ['*']], ['team-a', ['search', 'web']]]);
  });

  test('valueFormat skydns: --dns-zone and --dns-ttl instead of the templates, and they parse', async () => {
    const objects = await template({ release: 'dns', set: ['config.valueFormat=skydns', 'config.dnsZone=svc.example.org', 'config.dnsTtl=2s'] });
    const args = controllerContainer(objects).args ?? [];
    const flags = argMap(args);
    assert.equal(flags.get('value-format'), 'skydns');
    assert.equal(flags.get('dns-zone'), 'svc.example.org');
    assert.equal(flags.get('dns-ttl'), '2s');
    assert.ok(!flags.has('key-template') && !flags.has('value-template'), 'templates are not passed with skydns');
    const parsed = parseConfig(args, {});
    assert.equal(parsed.kind, 'config');
    if (parsed.kind !== 'config') return;
    assert.equal(parsed.config.dnsZone, 'svc.example.org');
    assert.equal(parsed.config.dnsTtlSeconds, 2);
  });

  test('every value set: secrets mounted read-only, every pod field rendered, namespaced RBAC, PDB, ServiceMonitor, dashboard', async () => {
    const objects = await template({ release: 'all', valuesFiles: [valuesAllPath] });
    assert.deepEqual(kinds(objects), [
      'ClusterRole/all-registrar-namespaces',
      'ClusterRole/all-registrar-nodes',
      'ClusterRoleBinding/all-registrar-namespaces',
      'ClusterRoleBinding/all-registrar-nodes',
      'ConfigMap/all-registrar-dashboard',
      'Deployment/all-registrar',
      'Pod/all-registrar-test-readyz',
      'PodDisruptionBudget/all-registrar',
      'Role/all-registrar',
      'Role/all-registrar',
      'RoleBinding/all-registrar',
      'RoleBinding/all-registrar',
      'Service/all-registrar-metrics',
      'ServiceAccount/registrar-sa',
      'ServiceMonitor/all-registrar',
    ]);
    const container = controllerContainer(objects);
    assert.equal(
      container.image,
      'registry.example.com/platform/etcd-registrar:0.1.0-rc.1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef',
    );
    for (const mount of (container.volumeMounts ?? []).filter((m) => m.name.startsWith('etcd-'))) {
      assert.equal(mount.readOnly, true, `${mount.name} is mounted read-only`);
    }
    assert.deepEqual(
      (container.volumeMounts ?? []).map((m) => m.name),
      ['etcd-tls', 'etcd-ca', 'etcd-auth', 'scratch'],
    );
    const spec = deploymentSpec(objects);
    const volumes = spec.template.spec.volumes ?? [];
    const secretVolumes = volumes.filter((v) => v.secret !== undefined);
    assert.deepEqual(secretVolumes.map((v) => [v.secret?.secretName, v.secret?.defaultMode, v.secret?.items]), [
      ['etcd-client-tls', 0o440, [{ key: 'client.pem', path: 'tls.crt' }, { key: 'client-key.pem', path: 'tls.key' }]],
      ['etcd-ca', 0o440, [{ key: 'ca.pem', path: 'ca.crt' }]],
      ['etcd-credentials', 0o440, [{ key: 'etcd-password', path: 'password' }]],
    ]);
    assert.ok(!(container.env ?? []).some((e) => /PASSWORD/i.test(e.name)), 'the password is never an environment variable');
    const pod = spec.template.spec;
    for (const field of ['affinity', 'tolerations', 'nodeSelector', 'topologySpreadConstraints', 'priorityClassName', 'imagePullSecrets']) {
      assert.ok(pod[field] !== undefined, `pod ${field} rendered`);
    }
    assert.deepEqual((pod['topologySpreadConstraints'] as { labelSelector: unknown }[])[0]?.labelSelector, {
      matchLabels: { 'app.kubernetes.io/name': 'registrar', 'app.kubernetes.io/instance': 'all' },
    });
    assert.equal(spec.replicas, 2);
    assert.equal(spec.template.metadata.labels['tier'], 'control');
    assert.equal(spec.template.metadata.annotations?.['example.com/pod'], 'yes');
    for (const role of objects.filter((o) => o.kind === 'Role')) assertLeastPrivilege(role);
    // Namespaces and nodes are cluster-scoped: the grants' and the zones' read access are the
    // only cluster-wide rules (values-all uses valueFormat json, which has a zone).
    const clusterRoles = objects.filter((o) => o.kind === 'ClusterRole');
    assert.equal(clusterRoles.length, 2);
    assertLeastPrivilege(find(objects, 'ClusterRole', 'all-registrar-namespaces'), [namespaceRule]);
    assertLeastPrivilege(find(objects, 'ClusterRole', 'all-registrar-nodes'), [nodeRule]);
    for (const binding of objects.filter((o) => o.kind === 'ClusterRoleBinding')) {
      assert.deepEqual(binding['subjects'], [{ kind: 'ServiceAccount', name: 'registrar-sa', namespace: 'etcd-registrar' }]);
    }
    assert.deepEqual(
      objects.filter((o) => o.kind === 'ClusterRoleBinding').map((o) => (o['roleRef'] as { name: string }).name),
      ['all-registrar-namespaces', 'all-registrar-nodes'],
    );
    assert.deepEqual(objects.filter((o) => o.kind === 'Role').map((o) => o.metadata.namespace), ['team-a', 'team-b']);
    for (const binding of objects.filter((o) => o.kind === 'RoleBinding')) {
      assert.deepEqual(binding['subjects'], [{ kind: 'ServiceAccount', name: 'registrar-sa', namespace: 'etcd-registrar' }]);
    }
    assert.deepEqual((find(objects, 'PodDisruptionBudget')['spec'] as Record<string, unknown>)['maxUnavailable'], 1);
    const monitor = find(objects, 'ServiceMonitor');
    assert.equal(monitor.metadata.namespace, 'monitoring');
    assert.equal(monitor.metadata.labels?.['release'], 'prometheus');
    const dashboard = find(objects, 'ConfigMap');
    assert.equal(dashboard.metadata.labels?.['grafana_dashboard'], '1');
    assert.equal(dashboard.metadata.namespace, 'monitoring');
  });

  test('RBAC: cluster mode grants only pods get/list/watch, events.k8s.io create/patch, (grants on) namespaces and (zones used) nodes get/list/watch', async () => {
    const objects = await template();
    assertLeastPrivilege(find(objects, 'ClusterRole'), [...expectedRules, namespaceRule]);
    const off = await template({ set: ['serviceGrants.mode=off'] });
    assertLeastPrivilege(find(off, 'ClusterRole'));
    assert.equal(argMap(controllerContainer(off).args ?? []).get('service-grants'), 'off');
    const binding = find(objects, 'ClusterRoleBinding');
    assert.deepEqual(binding['subjects'], [{ kind: 'ServiceAccount', name: 'test-etcd-registrar', namespace: 'etcd-registrar' }]);
    // Nodes only when zones are used: the JSON value format, or {zone} in a template.
    // (--set-json: --set and --set-string read a value holding '{' as a list.)
    const zoneValues = { valueFormat: 'json', keyTemplate: '/{zone}/{service}_{environment}/{ip}-{port}', valueTemplate: '{ip}:{port}@{zone}' };
    for (const [field, value] of Object.entries(zoneValues)) {
      const zoned = await template({ extra: ['--set-json', `config.${field}=${JSON.stringify(value)}`] });
      assertLeastPrivilege(find(zoned, 'ClusterRole'), [...expectedRules, namespaceRule, nodeRule]);
    }
    const noZone = await template({ extra: ['--set-json', `config.valueTemplate=${JSON.stringify('{ip}:{port}@{node}')}`] });
    assert.equal(argMap(controllerContainer(noZone).args ?? []).get('value-template'), '{ip}:{port}@{node}');
    assertLeastPrivilege(find(noZone, 'ClusterRole'), [...expectedRules, namespaceRule]);
    assertLeastPrivilege(find(await template({ set: ['config.valueFormat=json', 'serviceGrants.mode=off'] }), 'ClusterRole'), [...expectedRules, nodeRule]);
    const none = await template({ set: ['rbac.create=false', 'serviceAccount.create=false', 'serviceAccount.name=existing'] });
    assert.deepEqual(none.filter((o) => /Role|ServiceAccount/.test(o.kind)), []);
    assert.equal(deploymentSpec(none).template.spec.serviceAccountName, 'existing');
  });

  test('PodDisruptionBudget: auto renders it only above one replica; true/false force it', async () => {
    const has = async (set: string[]): Promise<boolean> =>
      (await template({ set })).some((o) => o.kind === 'PodDisruptionBudget');
    assert.equal(await has([]), true, 'two replicas by default');
    assert.equal(await has(['replicaCount=1']), false);
    assert.equal(await has(['replicaCount=2']), true);
    assert.equal(await has(['podDisruptionBudget.enabled=true']), true);
    assert.equal(await has(['replicaCount=3', 'podDisruptionBudget.enabled=false']), false);
    const pdb = find(await template({ set: ['replicaCount=2'] }), 'PodDisruptionBudget');
    assert.deepEqual(pdb['spec'], {
      minAvailable: 1,
      selector: { matchLabels: { 'app.kubernetes.io/name': 'etcd-registrar', 'app.kubernetes.io/instance': 'test' } },
    });
  });

  test('TLS with the CA in the same Secret, and auth with a plain username', async () => {
    const container = controllerContainer(
      await template({
        set: [
          'etcd.tls.enabled=true', 'etcd.tls.existingSecret=etcd-tls',
          'etcd.auth.enabled=true', 'etcd.auth.existingSecret=etcd-pw', 'etcd.auth.username=registrar',
        ],
      }),
    );
    const flags = argMap(container.args ?? []);
    assert.equal(flags.get('etcd-ca-file'), '/etc/etcd-registrar/etcd-tls/ca.crt');
    assert.equal(flags.get('etcd-cert-file'), '/etc/etcd-registrar/etcd-tls/tls.crt');
    assert.equal(flags.get('etcd-username'), 'registrar');
    assert.equal(flags.get('etcd-password-file'), '/etc/etcd-registrar/etcd-auth/password');
    assert.deepEqual(container.env?.map((e: { name: string }) => e.name), ['POD_NAME'], 'the plain username is an argument, not a Secret reference');
    assert.equal(parseConfig(container.args ?? [], {}).kind, 'config');
  });

  test('the helm test pod checks /readyz with the controller image, as non-root, read-only', async () => {
    const pod = find(await template({ release: 'reg', namespace: 'ops' }), 'Pod');
    const spec = pod['spec'] as { containers: Container[]; restartPolicy: string; automountServiceAccountToken: boolean };
    const [container] = spec.containers;
    assert.ok(container !== undefined);
    assert.equal(container.image, 'ghcr.io/etcd-registrar/etcd-registrar:0.1.0');
    assert.equal(container.command?.at(-1), 'http://reg-etcd-registrar-metrics.ops.svc:8080/readyz');
    assert.equal(container.securityContext?.['runAsNonRoot'], true);
    assert.equal(container.securityContext?.['readOnlyRootFilesystem'], true);
    assert.equal(spec.restartPolicy, 'Never');
    assert.equal(spec.automountServiceAccountToken, false);
  });

  test('the Grafana dashboard is valid JSON and charts every etcd_registrar_* metric', async () => {
    const dashboard = JSON.parse(await readFile(join(chartDir, 'dashboards', 'etcd-registrar.json'), 'utf8')) as {
      panels: { type: string; targets?: { expr: string }[] }[];
    };
    const exprs = dashboard.panels.flatMap((p) => p.targets ?? []).map((t) => t.expr).join('\n');
    const source = await readFile(join(repoRoot, 'src', 'observability', 'metrics.ts'), 'utf8');
    const metrics = [...source.matchAll(/name: '(etcd_registrar_[a-z_]+)'/g)].map((m) => m[1] ?? '');
    assert.ok(metrics.length >= 10, `found the metric names in metrics.ts (${metrics.length})`);
    const missing = metrics.filter((name) => !exprs.includes(name));
    assert.deepEqual(missing, [], 'metrics without a dashboard panel');
    const rendered = find(await template({ set: ['metrics.grafanaDashboard.enabled=true'] }), 'ConfigMap');
    const data = rendered['data'] as Record<string, string>;
    assert.deepEqual(JSON.parse(data['etcd-registrar.json'] ?? ''), dashboard);
  });
});

describe('chart: values schema and guards', () => {
  const failure = async (set: string[], extra: string[] = []): Promise<string> => {
    const result = await helm(templateArgs({ set, extra }));
    assert.notEqual(result.code, 0, `helm template --set ${set.join(' ')} should fail`);
    return result.stderr;
  };

  test('a wrong type is rejected with the path and the expected type', async () => {
    assert.match(await failure(['replicaCount=two']), /at '\/replicaCount': got string, want integer/);
    assert.match(await failure(['config.forceDeletes=maybe']), /at '\/config\/forceDeletes': got string, want boolean/);
    assert.match(await failure(['etcd.endpoints=5']), /at '\/etcd\/endpoints': got number, want string or array/);
  });

  test('an unknown key is rejected, at any depth', async () => {
    assert.match(await failure(['replicas=2']), /additional properties 'replicas' not allowed/);
    assert.match(await failure(['config.leaseTTL=10s']), /at '\/config': additional properties 'leaseTTL' not allowed/);
    assert.match(await failure(['etcd.tls.secretName=x']), /at '\/etcd\/tls': additional properties 'secretName' not allowed/);
    assert.match(await failure(['securityContext.runAsRoot=true']), /at '\/securityContext': additional properties 'runAsRoot' not allowed/);
  });

  test('enums, patterns and ranges', async () => {
    assert.match(await failure(['config.policy=delete-all']), /at '\/config\/policy': value must be one of 'sync', 'upsert-only'/);
    assert.match(await failure(['config.kubeContentType=yaml']), /at '\/config\/kubeContentType': value must be one of 'protobuf', 'json'/);
    assert.match(await failure(['config.logLevel=verbose']), /at '\/config\/logLevel': value must be one of/);
    assert.match(await failure(['config.leaseTtl=soon']), /at '\/config\/leaseTtl': '\S+' does not match pattern/);
    assert.match(await failure(['etcd.endpoints={etcd:2379}']), /at '\/etcd\/endpoints\/0': 'etcd:2379' does not match pattern/);
    assert.match(await failure(['config.maxDeleteShare=2']), /at '\/config\/maxDeleteShare': maximum: got 2, want 1/);
    assert.match(await failure(['image.digest=latest']), /at '\/image\/digest'/);
    assert.match(await failure(['watchNamespaces={Team_A}']), /at '\/watchNamespaces\/0'/);
    assert.match(await failure(['serviceGrants.mode=lax']), /at '\/serviceGrants\/mode': value must be one of 'off', 'open', 'strict'/);
    assert.match(await failure(['serviceGrants.namespaces.team-a={a/b}']), /at '\/serviceGrants\/namespaces\/team-a\/0'/);
    assert.match(await failure(['serviceGrants.namespaces.Team_A={search}']), /invalid propertyName 'Team_A'/);
  });

  test('inconsistent values fail with one clear message', async () => {
    assert.match(await failure(['rbac.namespaced=true']), /rbac\.namespaced=true needs watchNamespaces/);
    assert.match(await failure(['etcd.tls.enabled=true']), /etcd\.tls\.enabled=true needs etcd\.tls\.existingSecret/);
    assert.match(await failure(['etcd.auth.enabled=true']), /etcd\.auth\.enabled=true needs etcd\.auth\.existingSecret/);
    assert.match(await failure(['etcd.auth.enabled=true', 'etcd.auth.existingSecret=s']), /needs etcd\.auth\.username or etcd\.auth\.usernameKey/);
    assert.match(await failure(['metrics.serviceMonitor.enabled=true', 'metrics.service.enabled=false', 'tests.enabled=false']), /needs metrics\.service\.enabled=true/);
    assert.match(await failure(['config.valueFormat=skydns']), /config\.dnsZone is required with config\.valueFormat skydns/);
  });

  test('every value in values.yaml is documented by a comment, and described in the schema', async () => {
    const lines = (await readFile(join(chartDir, 'values.yaml'), 'utf8')).split('\n');
    const undocumented: string[] = [];
    const stack: { indent: number; documented: boolean; path: string }[] = [];
    lines.forEach((line, index) => {
      const match = /^( *)([A-Za-z_][\w.-]*):(.*)$/.exec(line);
      if (match === null) return;
      const indent = (match[1] ?? '').length;
      while (stack.length > 0 && (stack.at(-1)?.indent ?? 0) >= indent) stack.pop();
      const previous = lines.slice(0, index).reverse().find((l) => l.trim() !== '') ?? '';
      const documented = previous.trim().startsWith('#') || (stack.at(-1)?.documented ?? false);
      const path = [...stack.map((s) => s.path), match[2]].join('.');
      const next = lines.slice(index + 1).find((l) => l.trim() !== '' && !l.trim().startsWith('#')) ?? '';
      const isGroup = (match[3] ?? '').trim() === '' && /^ */.exec(next)![0].length > indent && !next.trim().startsWith('-');
      if (!isGroup && !documented) undocumented.push(path);
      stack.push({ indent, documented, path: match[2] ?? '' });
    });
    assert.deepEqual(undocumented, []);
    const schema = JSON.parse(await readFile(join(chartDir, 'values.schema.json'), 'utf8')) as SchemaNode;
    assert.equal(schema.$schema, 'http://json-schema.org/draft-07/schema#');
    const open: string[] = [];
    walkSchema(schema, '', open);
    assert.deepEqual(open, [], 'objects whose properties are listed must reject unknown keys');
  });
});

interface SchemaNode {
  $schema?: string;
  type?: string | string[];
  properties?: Record<string, SchemaNode>;
  additionalProperties?: boolean | SchemaNode;
  items?: SchemaNode;
}

function walkSchema(node: SchemaNode, path: string, open: string[]): void {
  if (node.properties !== undefined) {
    if (node.additionalProperties !== false) open.push(path || '/');
    for (const [key, child] of Object.entries(node.properties)) walkSchema(child, `${path}/${key}`, open);
  }
  if (node.items !== undefined) walkSchema(node.items, `${path}/*`, open);
}

describe('chart: packaged as users get it', () => {
  test('helm package holds the chart, its schema, the Rancher form and readme, and nothing else', async () => {
    const files = execFileSync('tar', ['-tzf', await packagedChart()], { encoding: 'utf8' }).split('\n').filter((f) => f !== '' && !f.endsWith('/'));
    for (const file of ['Chart.yaml', 'values.yaml', 'values.schema.json', 'questions.yaml', 'app-readme.md', 'README.md', 'templates/deployment.yaml', 'dashboards/etcd-registrar.json']) {
      assert.ok(files.includes(`etcd-registrar/${file}`), `the package holds ${file}: ${files.join(', ')}`);
    }
    assert.deepEqual(files.filter((f) => !f.startsWith('etcd-registrar/')), []);
  });

  test('helm template of the package names the image npm run image builds', async () => {
    const image = defaultImageTag();
    const at = image.lastIndexOf(':');
    const objects = await template({ chart: await packagedChart(), set: [`image.repository=${image.slice(0, at)}`, `image.tag=${image.slice(at + 1)}`] });
    assert.equal(controllerContainer(objects).image, image);
  });

  test('the etcd endpoints as one comma-separated string (Rancher\'s form gives a string) render as a list does', async () => {
    const list = controllerContainer(await template({ set: ['etcd.endpoints={https://a:2379,https://b:2379}'] }));
    const text = controllerContainer(await template({ set: ['etcd.endpoints=https://a:2379\\,https://b:2379'] }));
    assert.ok(list.args?.includes('--etcd-endpoints=https://a:2379,https://b:2379'), String(list.args));
    assert.deepEqual(text.args, list.args);
    const bad = await helm(templateArgs({ set: ['etcd.endpoints=etcd:2379'] }));
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /etcd\/endpoints/);
  });
});

describe('deploy/ manifests', () => {
  test('deploy/etcd-registrar.yaml matches the chart (run `npm run manifests` after changing the chart)', async () => {
    const [expected, actual] = await Promise.all([renderManifests(), readFile(manifestsPath, 'utf8')]);
    assert.ok(expected === actual, 'deploy/etcd-registrar.yaml has drifted from the chart: run `npm run manifests` and commit the result');
    const objects = parseManifests(actual);
    assert.equal(objects[0]?.kind, 'Namespace');
    assert.ok(!objects.some((o) => o.metadata.annotations?.['helm.sh/hook'] !== undefined), 'no helm hooks in plain manifests');
    assert.ok(objects.some((o) => o.kind === 'Deployment'));
  });

  test('helm template is deterministic', async () => {
    const args = templateArgs({ valuesFiles: [valuesAllPath] });
    assert.equal(await helmOk(args), await helmOk(args));
  });
});
