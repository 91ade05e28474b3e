// DNS discovery end to end: `etcd-registrar run --value-format skydns` writes the registry,
// a real CoreDNS (etcd plugin, TLS client certificate and its own read-only etcd user) serves
// the zone, and real resolvers (dig; Node's c-ares for timing) must see exactly the Ready pods
// as a Deployment scales, readiness flips and pods start terminating.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Resolver } from 'node:dns/promises';
import { startCluster, type Cluster } from '../cluster/cluster.ts';
import { registrarBin, startController, type ControllerProcess } from '../e2e/support.ts';
import { dig, resolveA, resolverFor, startCoreDns, type CoreDns } from './coredns.ts';
import { listPods, type PodState } from './pods.ts';

const NAMESPACE = 'dns';
const ZONE = 'svc.example.org';
const NAME = `search.pre.${ZONE}`;
/** What the test asserts for every change to reach a DNS answer (measured figures are printed). */
const BOUND_MS = 5_000;

let cluster: Cluster;
let controller: ControllerProcess | undefined;
let coredns: CoreDns | undefined;
let resolver: Resolver;
let dir: string;
const figures: Record<string, number> = {};

async function kubectl(...args: string[]): Promise<string> {
  return (await cluster.kubectl(args)).stdout;
}

function pods(): Promise<PodState[]> {
  return listPods(cluster, NAMESPACE, 'app=search');
}

/** IPs of the pods that should be in DNS: Ready, with an IP, not terminating. */
async function servingIps(): Promise<string[]> {
  return (await pods()).filter((p) => p.ready && !p.terminating && p.ip !== '').map((p) => p.ip).sort();
}

/**
 * Polls CoreDNS (every 10 ms, c-ares) until the A answer equals `expected()`; returns the
 * milliseconds since `since`. Fails after BOUND_MS.
 */
async function dnsFollows(what: string, since: number, expected: () => Promise<string[]> | string[]): Promise<number> {
  const deadline = since + BOUND_MS;
  let want = await expected();
  let got: string[] = [];
  for (;;) {
    got = [...new Set(await resolveA(resolver, NAME))].sort();
    if (JSON.stringify(got) === JSON.stringify(want)) {
      const ms = Date.now() - since;
      figures[what] = ms;
      return ms;
    }
    if (Date.now() > deadline) {
      assert.fail(`${what}: DNS answer ${JSON.stringify(got)} did not become ${JSON.stringify(want)} within ${String(BOUND_MS)} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
    want = await expected();
  }
}

function deployment(replicas: number): unknown {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'search', namespace: NAMESPACE },
    spec: {
      replicas,
      selector: { matchLabels: { app: 'search' } },
      template: {
        metadata: {
          labels: { app: 'search' },
          annotations: {
            'etcd-registrar.io/register': 'true',
            'etcd-registrar.io/service': 'Search',
            'etcd-registrar.io/environment': 'PRE',
            'etcd-registrar.io/port': '86,http',
          },
        },
        spec: {
          terminationGracePeriodSeconds: 30,
          containers: [{ name: 'app', image: 'search:1', ports: [{ name: 'http', containerPort: 8080 }] }],
        },
      },
    },
  };
}

async function setReady(name: string, ready: boolean): Promise<void> {
  const status = ready ? 'True' : 'False';
  await kubectl('patch', 'pod', name, '-n', NAMESPACE, '--subresource=status', '--type=strategic', '-p',
    JSON.stringify({ status: { conditions: [{ type: 'Ready', status }, { type: 'ContainersReady', status }] } }));
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'discovery-dns-'));
  cluster = await startCluster({ registryTls: true, registryAuth: true });
  await cluster.createNamespace(NAMESPACE);
  coredns = await startCoreDns({ cluster, zone: ZONE, dir });
  resolver = resolverFor(coredns.port);
  controller = await startController({
    kubeconfig: cluster.kubeconfigPath,
    etcdEndpoints: cluster.registryEndpoints,
    dir,
    extraArgs: [
      ...cluster.registryControllerArgs(),
      '--value-format', 'skydns', '--dns-zone', ZONE, '--dns-ttl', '1s',
      '--namespaces', NAMESPACE, '--lease-ttl', '10s', '--reconcile-interval', '5s',
    ],
  });
  await controller.waitReady();
});

after(async () => {
  console.error(`DNS follows pods (ms): ${JSON.stringify(figures)}`);
  await controller?.stop();
  await coredns?.stop();
  await cluster?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('DNS discovery through CoreDNS (skydns layout)', () => {
  it('A and SRV answers hold exactly the Ready pods, one SRV record per pod and port', async () => {
    const started = Date.now();
    await cluster.kubectl(['apply', '-f', '-'], { input: JSON.stringify(deployment(3)) });
    await dnsFollows('create 3', started, async () => {
      const ips = await servingIps();
      return ips.length === 3 ? ips : ['(waiting for 3 Ready pods)'];
    });
    const ips = await servingIps();
    assert.deepEqual(await dig(coredns!.port, 'A', NAME), ips);
    // SRV: priority 10, port and a target naming the instance key, for both ports of each pod.
    const srv = await dig(coredns!.port, 'SRV', NAME);
    const expected = ips.flatMap((ip) => [86, 8080].map((port) => `${port} ${ip.replaceAll('.', '-')}-${port}.${NAME}.`));
    assert.deepEqual(srv.map((line) => line.split(' ').slice(2).join(' ')).sort(), expected.sort());
    for (const line of srv) assert.match(line, /^10 \d+ /);
    // Each SRV target resolves to its pod.
    const [ip] = ips;
    assert.ok(ip !== undefined);
    assert.deepEqual(await dig(coredns!.port, 'A', `${ip.replaceAll('.', '-')}-86.${NAME}`), [ip]);
    // The record TTL is the --dns-ttl written into the value.
    const stdout = execFileSync('/usr/bin/dig', ['@127.0.0.1', '-p', String(coredns!.port), '+noall', '+answer', 'A', NAME], { encoding: 'utf8' });
    for (const line of stdout.trim().split('\n')) assert.match(line, new RegExp(`^${NAME.replaceAll('.', '\\.')}\\.\\s+1\\s+IN\\s+A\\s`));
    assert.deepEqual(await dig(coredns!.port, 'AAAA', NAME), []);
  });

  it('follows scale up and down', async () => {
    let since = Date.now();
    await kubectl('scale', 'deployment/search', '-n', NAMESPACE, '--replicas=6');
    await dnsFollows('scale 3->6', since, async () => {
      const ips = await servingIps();
      return ips.length === 6 ? ips : ['(waiting for 6 Ready pods)'];
    });
    since = Date.now();
    await kubectl('scale', 'deployment/search', '-n', NAMESPACE, '--replicas=2');
    // The removed pods are terminating (grace 30 s) but still exist: DNS must drop them now.
    await dnsFollows('scale 6->2', since, servingIps);
    assert.ok((await pods()).some((p) => p.terminating), 'scaled-down pods still terminating while DNS dropped them');
    assert.equal((await dig(coredns!.port, 'A', NAME)).length, 2);
  });

  it('follows readiness flips', async () => {
    const target = (await pods()).find((p) => p.ready && !p.terminating);
    assert.ok(target !== undefined);
    let since = Date.now();
    await setReady(target.name, false);
    await dnsFollows('readiness off', since, servingIps);
    assert.ok(!(await dig(coredns!.port, 'A', NAME)).includes(target.ip));
    since = Date.now();
    await setReady(target.name, true);
    await dnsFollows('readiness on', since, servingIps);
    assert.ok((await dig(coredns!.port, 'A', NAME)).includes(target.ip));
  });

  it('drops a pod at termination start, long before it is gone', async () => {
    const target = (await pods()).find((p) => p.ready && !p.terminating);
    assert.ok(target !== undefined);
    const since = Date.now();
    await kubectl('delete', 'pod', target.name, '-n', NAMESPACE, '--wait=false');
    await dnsFollows('termination start', since, async () => [...(await servingIps())].filter((ip) => ip !== target.ip));
    assert.ok(!(await dig(coredns!.port, 'A', NAME)).includes(target.ip));
    const still = (await pods()).find((p) => p.name === target.name);
    assert.ok(still?.terminating === true, 'the pod is still terminating (grace period 30 s)');
  });

  it('answers AAAA for an IPv6 registration (dual-stack pod asking for both families)', async () => {
    const target = (await pods()).find((p) => p.ready && !p.terminating);
    assert.ok(target !== undefined);
    const v6 = 'fd00:10:244::7';
    // KWOK hands out IPv4 only: give the running pod a second (IPv6) address, as a dual-stack
    // kubelet would, and ask for both families.
    await kubectl('patch', 'pod', target.name, '-n', NAMESPACE, '--subresource=status', '--type=merge', '-p',
      JSON.stringify({ status: { podIPs: [{ ip: target.ip }, { ip: v6 }] } }));
    await kubectl('annotate', 'pod', target.name, '-n', NAMESPACE, 'etcd-registrar.io/ip-families=ipv4,ipv6');
    const since = Date.now();
    for (;;) {
      if ((await dig(coredns!.port, 'AAAA', NAME)).includes(v6)) break;
      assert.ok(Date.now() - since < BOUND_MS, 'AAAA answer holds the IPv6 address');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.deepEqual(await dig(coredns!.port, 'AAAA', NAME), [v6]);
    assert.ok((await dig(coredns!.port, 'A', NAME)).includes(target.ip), 'the IPv4 address stays');
    const srv = await dig(coredns!.port, 'SRV', NAME);
    assert.ok(srv.some((line) => line.endsWith(` 86 fd00-10-244--7-86.${NAME}.`)), JSON.stringify(srv));
    assert.deepEqual(await dig(coredns!.port, 'AAAA', `fd00-10-244--7-86.${NAME}`), [v6]);
  });

  it('audits each change with the skydns key, and marks /skydns/ as a directory holding our keys (decision 0013)', async () => {
    const registered = controller!.audits().filter((r) => r.action === 'register' && r.outcome === 'ok');
    assert.ok(registered.length > 0);
    for (const record of registered) assert.match(record.key ?? '', /^\/skydns\/org\/example\/svc\/pre\/search\/[0-9a-f-]+-(86|8080)$/);
    assert.ok(controller!.audits().some((r) => r.action === 'deregister' && r.outcome === 'ok' && (r.key ?? '').startsWith('/skydns/')));
    const admin = cluster.registryAdmin();
    const keys = await admin.getAll().prefix('/skydns/').exec();
    const markers = await admin.getAll().prefix('/etcd-registrar/owners/etcd-registrar/dirs').exec();
    const dataLease = keys.kvs[0]?.lease;
    assert.ok(dataLease !== undefined && dataLease !== '0');
    assert.deepEqual(markers.kvs.map((kv) => [kv.key.toString().replace(/^.*\/dirs\/*/, '/'), kv.lease]), [['/skydns/', dataLease]]);
  });

  it('`list` shows the skydns keys', async () => {
    const out = execFileSync(process.execPath, [
      registrarBin, 'list', '--output', 'json', '--kubeconfig', cluster.kubeconfigPath,
      '--etcd-endpoints', cluster.registryEndpoints.join(','), ...cluster.registryControllerArgs(),
      '--value-format', 'skydns', '--dns-zone', ZONE, '--dns-ttl', '1s', '--namespaces', NAMESPACE,
    ], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const serving = await servingIps();
    assert.ok(serving.length > 0);
    for (const ip of serving) assert.ok(out.includes(`/skydns/org/example/svc/pre/search/${ip.replaceAll('.', '-')}-86`), `${ip} listed`);
  });
});
