// The chart against the real local control plane (test/cluster): server-side dry runs of
// the rendered manifests, helm install/uninstall, and the RBAC it grants, checked with the
// chart's own ServiceAccount token: enough to run the controller, and nothing more.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startCluster, type Cluster } from '../cluster/cluster.ts';
import { freePort, spawnManaged, waitFor } from '../cluster/process.ts';
import { toolPath } from '../cluster/tools.ts';
import { manifestsPath } from '../../scripts/render-manifests.ts';
import { defaultImageTag } from '../../scripts/image.ts';
import { helm, helmOk, packagedChart, parseManifests, repoRoot, templateArgs, valuesAllPath, type DeploymentSpec } from './helm.ts';

const RELEASE = 'reg';
const NAMESPACE = 'registrar-system';
const SA = `${RELEASE}-etcd-registrar`;

let cluster: Cluster;
let helmEnv: Record<string, string>;
/** The chart as users get it (`helm package`), not the folder. */
let chart: string;
/** The image `npm run image` builds (test/image runs it; under KWOK it only has to be named). */
const image = defaultImageTag();
const imageRepository = image.slice(0, image.lastIndexOf(':'));
const imageTag = image.slice(image.lastIndexOf(':') + 1);

/** helm against the test cluster, with its own config/cache/data dirs. */
const helmIn = (args: readonly string[]): Promise<string> =>
  helmOk([...args, '--kubeconfig', cluster.kubeconfigPath], helmEnv);

/** `kubectl auth can-i` as someone: true for "yes", false for "no". */
function canI(kubeconfig: string, args: readonly string[]): Promise<boolean> {
  return new Promise((resolve, reject) => {
    execFile(toolPath('kubectl'), [`--kubeconfig=${kubeconfig}`, 'auth', 'can-i', ...args], (error, stdout, stderr) => {
      const answer = stdout.trim();
      if (answer === 'yes') resolve(true);
      else if (answer.startsWith('no')) resolve(false);
      else reject(new Error(`kubectl auth can-i ${args.join(' ')}: ${error?.message ?? ''} ${stderr}`));
    });
  });
}

/** Every object in the cluster carrying the release's instance label, as kind/namespace/name. */
async function objectsOf(release: string): Promise<string[]> {
  const { stdout: types } = await cluster.kubectl(['api-resources', '--verbs=list', '-o', 'name']);
  const resources = types.split('\n').filter((t) => t !== '' && !t.startsWith('events'));
  const { stdout } = await cluster.kubectl([
    'get', resources.join(','), '--all-namespaces', '--ignore-not-found',
    '-l', `app.kubernetes.io/instance=${release}`,
    '-o', 'jsonpath={range .items[*]}{.kind}/{.metadata.namespace}/{.metadata.name}{"\\n"}{end}',
  ]);
  const { stdout: releaseSecrets } = await cluster.kubectl([
    'get', 'secrets', '--all-namespaces', '-l', `owner=helm,name=${release}`, '-o', 'name',
  ]);
  return [...stdout.split('\n'), ...releaseSecrets.split('\n')].filter((line) => line.trim() !== '');
}

describe('chart in the real control plane', () => {
  before(async () => {
    cluster = await startCluster({ nodes: 2 });
    const home = join(cluster.dir, 'helm');
    helmEnv = {
      HELM_CACHE_HOME: join(home, 'cache'),
      HELM_CONFIG_HOME: join(home, 'config'),
      HELM_DATA_HOME: join(home, 'data'),
    };
    await mkdir(home, { recursive: true });
    chart = await packagedChart();
  });
  after(async () => {
    await cluster?.stop();
  });

  test('deploy/etcd-registrar.yaml passes a server-side dry run', async () => {
    // A dry run does not create the Namespace the other objects live in.
    await cluster.createNamespace('etcd-registrar');
    const { stdout } = await cluster.kubectl(['apply', '--dry-run=server', '--server-side', '-f', manifestsPath]);
    assert.match(stdout, /deployment\.apps\/etcd-registrar serverside-applied \(server dry run\)/);
    assert.match(stdout, /clusterrole\.rbac\.authorization\.k8s\.io\/etcd-registrar serverside-applied/);
  });

  test('the chart with every value set passes a server-side dry run (but the ServiceMonitor: no CRD here)', async () => {
    for (const ns of ['team-a', 'team-b', 'monitoring']) await cluster.createNamespace(ns);
    const rendered = await helmOk(templateArgs({ release: 'all', valuesFiles: [valuesAllPath], chart }));
    const objects = parseManifests(rendered).filter((o) => o.kind !== 'ServiceMonitor');
    assert.ok(objects.length >= 10);
    const { stdout } = await cluster.kubectl(['apply', '--dry-run=server', '-f', '-'], {
      input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }),
    });
    assert.match(stdout, /deployment\.apps\/all-registrar created \(server dry run\)/);
    assert.match(stdout, /poddisruptionbudget\.policy\/all-registrar created \(server dry run\)/);
  });

  test('helm install: the release becomes ready and its ServiceAccount has exactly the RBAC it needs', async () => {
    await helmIn([
      'install', RELEASE, chart, '--namespace', NAMESPACE, '--create-namespace',
      '--set', 'config.environment=PRE', '--set', 'terminationGracePeriodSeconds=5',
      '--set', `image.repository=${imageRepository}`, '--set', `image.tag=${imageTag}`, '--wait', '--timeout', '120s',
    ]);
    const { stdout: deployedImage } = await cluster.kubectl(['get', 'deployment', SA, '-n', NAMESPACE, '-o', 'jsonpath={.spec.template.spec.containers[0].image}']);
    assert.equal(deployedImage, image, 'the release runs the image npm run image builds');
    const { stdout: status } = await cluster.kubectl(['get', 'deployment', SA, '-n', NAMESPACE, '-o', 'jsonpath={.status.readyReplicas}']);
    assert.equal(status, '2', 'both replicas (leader and standby) ready');
    const sa = await cluster.serviceAccountKubeconfig(NAMESPACE, SA);
    // Enough: watch pods everywhere, write events, read Namespaces (service grants).
    for (const args of [
      ['list', 'namespaces'],
      ['watch', 'namespaces'],
      ['get', 'namespaces/default'],
      ['list', 'pods', '--all-namespaces'],
      ['watch', 'pods', '--all-namespaces'],
      ['get', 'pods', '-n', 'default'],
      ['create', 'events.events.k8s.io', '-n', 'default'],
      ['patch', 'events.events.k8s.io', '-n', 'team-a'],
    ]) {
      assert.equal(await canI(sa, args), true, `the ServiceAccount can ${args.join(' ')}`);
    }
    // Nothing more.
    for (const args of [
      ['delete', 'pods', '-n', 'default'],
      ['create', 'pods', '-n', 'default'],
      ['patch', 'pods', '-n', 'default'],
      ['get', 'secrets', '-n', NAMESPACE],
      ['list', 'secrets', '--all-namespaces'],
      ['get', 'configmaps', '-n', NAMESPACE],
      ['delete', 'events.events.k8s.io', '-n', 'default'],
      ['patch', 'namespaces/default'],
      ['delete', 'namespaces/default'],
      ['create', 'namespaces'],
      // The default value format uses no zone: Nodes are not read.
      ['list', 'nodes'],
      ['get', 'nodes/kwok-node-0'],
      ['create', 'pods/exec', '-n', 'default'],
      ['*', '*', '--all-namespaces'],
    ]) {
      assert.equal(await canI(sa, args), false, `the ServiceAccount must not ${args.join(' ')}`);
    }
    // And the API server agrees when the token is actually used.
    await assert.rejects(cluster.kubectl(['get', 'secrets', '-n', NAMESPACE], { kubeconfig: sa }), /forbidden/);
    await cluster.kubectl(['run', 'victim', '-n', 'default', '--image=registry.example/none', '--restart=Never']);
    await assert.rejects(cluster.kubectl(['delete', 'pod', 'victim', '-n', 'default', '--wait=false'], { kubeconfig: sa }), /forbidden/);
    await cluster.kubectl(['get', 'pods', '--all-namespaces'], { kubeconfig: sa });
  });

  test('the chart\'s ServiceAccount token runs the controller, which registers an annotated pod', async (t) => {
    if (!existsSync(join(repoRoot, 'dist', 'cli.js'))) {
      t.skip('dist/cli.js is not built (npm run build)');
      return;
    }
    const sa = await cluster.serviceAccountKubeconfig(NAMESPACE, SA);
    // The controller runs with exactly the arguments of the installed Deployment, except
    // where it reaches etcd and where it listens (it runs here, not in a pod).
    const manifest = parseManifests(await helmIn(['get', 'manifest', RELEASE, '--namespace', NAMESPACE]));
    const deployment = manifest.find((o) => o.kind === 'Deployment');
    const args = (deployment?.['spec'] as DeploymentSpec).template.spec.containers[0]?.args ?? [];
    const port = await freePort();
    const runArgs = [
      ...args.filter((a) => !a.startsWith('--etcd-endpoints=') && !a.startsWith('--metrics-address=')),
      `--etcd-endpoints=${cluster.registry.endpoints.join(',')}`,
      `--metrics-address=127.0.0.1:${port}`,
      `--kubeconfig=${sa}`,
      // Strict grants: the pod below registers only if the token can read its Namespace's grant.
      '--service-grants=strict',
    ];
    assert.equal(runArgs[0], 'run');
    const logPath = join(cluster.dir, 'chart-controller.log');
    const proc = spawnManaged({
      name: 'etcd-registrar',
      command: process.execPath,
      args: [join(repoRoot, 'bin', 'etcd-registrar.js'), ...runArgs],
      logPath,
    });
    try {
      await waitFor('controller /readyz', async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).ok, {
        timeoutMs: 30_000, intervalMs: 100, process: proc,
      });
      await cluster.createNamespace('shop');
      await cluster.kubectl(['annotate', 'namespace', 'shop', 'etcd-registrar.io/allowed-services=search']);
      const pod = {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: {
          name: 'search-0',
          namespace: 'shop',
          annotations: {
            'etcd-registrar.io/register': 'true',
            'etcd-registrar.io/service': 'search',
            'etcd-registrar.io/port': '86',
          },
        },
        spec: { containers: [{ name: 'search', image: 'registry.example/search:1', ports: [{ containerPort: 86 }] }] },
      };
      await cluster.kubectl(['apply', '-f', '-'], { input: JSON.stringify(pod) });
      const ip = await waitFor('pod IP', async () => {
        const { stdout } = await cluster.kubectl(['get', 'pod', 'search-0', '-n', 'shop', '-o', 'jsonpath={.status.podIP}']);
        return stdout.trim() === '' ? undefined : stdout.trim();
      }, { timeoutMs: 30_000, intervalMs: 100 });
      const key = `/search_PRE/${ip}-86`;
      const value = await waitFor(`etcd key ${key}`, async () => {
        const out = await new Promise<string>((resolve, reject) => {
          execFile(toolPath('etcdctl'), [`--endpoints=${cluster.registry.endpoints.join(',')}`, 'get', key, '--print-value-only'],
            (error, stdout) => (error === null ? resolve(stdout.trim()) : reject(error)));
        });
        return out === '' ? undefined : out;
      }, { timeoutMs: 15_000, intervalMs: 100, process: proc });
      assert.equal(value, `${ip}:86`);
      // The Registered event needs the events.k8s.io grant; nothing in the log may be forbidden.
      await waitFor('Registered event on the pod', async () => {
        const { stdout } = await cluster.kubectl(['get', 'events.events.k8s.io', '-n', 'shop', '-o', 'jsonpath={range .items[*]}{.regarding.name}/{.reason}{"\\n"}{end}']);
        return stdout.includes('search-0/Registered');
      }, { timeoutMs: 15_000, intervalMs: 200, process: proc });
      const log = readFileSync(logPath, 'utf8');
      assert.doesNotMatch(log, /forbidden/i, 'the controller hit an RBAC denial: the chart grants too little');
    } finally {
      proc.signal('SIGTERM');
      const exit = await proc.exited;
      assert.equal(exit.code, 0, `the controller exits 0 on SIGTERM:\n${readFileSync(logPath, 'utf8').slice(-2000)}`);
    }
  });

  test('namespaced mode: a Role per watched namespace; cluster-wide only reading Namespaces (service grants) and, JSON values, Nodes', async () => {
    await helmIn([
      'install', 'regns', chart, '--namespace', 'registrar-ns', '--create-namespace',
      '--set', 'rbac.namespaced=true', '--set', 'watchNamespaces={team-a}', '--set', 'config.ownerId=regns', '--set', 'terminationGracePeriodSeconds=5',
      '--set', 'config.valueFormat=json',
      '--wait', '--timeout', '120s',
    ]);
    const sa = await cluster.serviceAccountKubeconfig('registrar-ns', 'regns-etcd-registrar');
    assert.equal(await canI(sa, ['watch', 'pods', '-n', 'team-a']), true);
    assert.equal(await canI(sa, ['create', 'events.events.k8s.io', '-n', 'team-a']), true);
    assert.equal(await canI(sa, ['list', 'pods', '-n', 'team-b']), false);
    assert.equal(await canI(sa, ['list', 'pods', '--all-namespaces']), false);
    // Namespaces are cluster-scoped: reading them (service grants) is the one cluster-wide grant.
    assert.equal(await canI(sa, ['watch', 'namespaces']), true);
    assert.equal(await canI(sa, ['patch', 'namespaces/team-a']), false);
    // The JSON value's zone comes from the Nodes' zone label: reading Nodes, nothing more.
    for (const args of [['list', 'nodes'], ['watch', 'nodes'], ['get', 'nodes/kwok-node-0']]) {
      assert.equal(await canI(sa, args), true, `the ServiceAccount can ${args.join(' ')}`);
    }
    for (const args of [['patch', 'nodes/kwok-node-0'], ['delete', 'nodes/kwok-node-0'], ['create', 'nodes'], ['get', 'nodes', '--subresource=proxy']]) {
      assert.equal(await canI(sa, args), false, `the ServiceAccount must not ${args.join(' ')}`);
    }
  });

  test('helm uninstall leaves no object of the releases behind', async () => {
    assert.notDeepEqual(await objectsOf(RELEASE), [], 'the release has objects before uninstall');
    await helmIn(['uninstall', RELEASE, '--namespace', NAMESPACE, '--wait', '--timeout', '120s']);
    await helmIn(['uninstall', 'regns', '--namespace', 'registrar-ns', '--wait', '--timeout', '120s']);
    for (const release of [RELEASE, 'regns']) {
      const left = await waitFor(`objects of ${release} to be gone`, async () => {
        const objects = await objectsOf(release);
        return objects.length === 0 ? objects : undefined;
      }, { timeoutMs: 60_000, intervalMs: 500 }).catch(async () => objectsOf(release));
      assert.deepEqual(left, [], `objects of release ${release} left behind`);
    }
    const list = await helm(['list', '--all-namespaces', '-q', '--kubeconfig', cluster.kubeconfigPath], helmEnv);
    assert.equal(list.stdout.trim(), '');
  });
});
