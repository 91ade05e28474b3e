// Fault suite (issue 14): network faults between the controller and its two dependencies,
// injected by a real Toxiproxy. Each replica reaches the registry etcd and the kube-apiserver
// only through proxies of its own (TLS to the API server passes through as TCP), while the
// suite's observers (etcd watches, pod watch) and the churn talk to both directly. Same
// verdicts as the chaos suite (chaos/suite.ts): live-key DELETEs, convergence after the
// fault, the data lease kept; plus what each fault is about (no restart, fencing, audit
// records exactly matching etcd's changes, bounded memory and queue). Figures are printed
// as a table at the end; docs/chaos.md keeps the reference runs.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Toxiproxy, type Proxy } from '../cluster/toxiproxy.ts';
import { eventually, type ControllerProcess, type WatchedEvent } from './support.ts';
import { ChaosSuite, isLeader, sleep, stepDowns } from './chaos/suite.ts';

const LEASE_TTL_S = 10;
const ELECTION_TTL_S = 2;
/** The bound: after a partition shorter than the lease TTL, etcd matches the pods within this. */
const CONVERGE_AFTER_HEAL_S = 3;
/** Stated bound for re-registering every Ready pod after a partition that outlived the lease. */
const REREGISTER_AFTER_LONG_PARTITION_S = 5;

interface Links {
  readonly etcd: Proxy;
  readonly api: Proxy;
}

let toxiproxy: Toxiproxy;
const links = new Map<string, Links>();

const suite: ChaosSuite = new ChaosSuite({
  name: 'faults',
  leaseTtlS: LEASE_TTL_S,
  electionTtlS: ELECTION_TTL_S,
  cluster: {},
  // Every replica gets its own two links, so that one replica can be cut off alone.
  links: async (name) => {
    const { cluster } = suite;
    const etcdUpstream = new URL(cluster.registryEndpoints[0]!).host;
    const etcd = await toxiproxy.createProxy(`etcd-${name}`, etcdUpstream);
    const api = await toxiproxy.createProxy(`api-${name}`, new URL(cluster.apiServerUrl).host);
    links.set(name, { etcd, api });
    // The API server's certificate names 127.0.0.1, so only the port changes.
    const kubeconfig = join(cluster.dir, `kubeconfig-${name}`);
    const text = await readFile(cluster.kubeconfigPath, 'utf8');
    await writeFile(kubeconfig, text.replaceAll(cluster.apiServerUrl, `https://127.0.0.1:${api.port}`));
    return { etcdEndpoints: [`http://${etcd.listen}`], kubeconfig };
  },
});

const linksOf = (replica: ControllerProcess): Links => {
  const found = links.get(replica.proc.name);
  assert.ok(found, `links of ${replica.proc.name}`);
  return found;
};

/** Another owner's key under the same root: no fault may make the controller touch it. */
const FOREIGN_KEY = `${suite.prefix}10.99.0.1-86`;

async function metricsOf(replica: ControllerProcess): Promise<Map<string, number>> {
  const text = await (await fetch(`${replica.metricsUrl}/metrics`, { signal: AbortSignal.timeout(5_000) })).text();
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line === '') continue;
    const space = line.lastIndexOf(' ');
    values.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return values;
}

const metric = (values: Map<string, number>, name: string): number => values.get(name) ?? 0;

/** Seconds the replica reports it spent as a standby before its latest re-election, if any. */
function lastStandbySeconds(replica: ControllerProcess): number | undefined {
  const line = replica.lines().filter((l) => l['msg'] === 're-elected after stepping down: reconciling').at(-1);
  return line === undefined ? undefined : Number(line['standbySeconds']);
}

/** The current etcd revision, as the observer reads it. */
async function revisionNow(): Promise<bigint> {
  return BigInt((await suite.observer.client.get(suite.sentinel).exec()).header.revision);
}

before(async () => {
  toxiproxy = await Toxiproxy.start();
  await suite.setUp();
  await suite.observer.client.put(FOREIGN_KEY).value('10.99.0.1:86').exec();
  suite.foreignKeys.add(FOREIGN_KEY);
  await suite.ensureReplicas(1);
});

after(async () => {
  await suite.tearDown('fault suite (Toxiproxy between each replica and etcd / the API server)');
  await toxiproxy?.stop();
});

describe('network faults', () => {
  it(`etcd partition shorter than the lease TTL: no live DELETE, no restart, converged within ${CONVERGE_AFTER_HEAL_S} s of the heal`, async (t) => {
    await suite.ensureReplicas(1);
    const only = await suite.leader();
    const downsBefore = stepDowns(only);
    const { row } = await suite.scenario(t, `etcd blackhole 5 s (lease TTL ${LEASE_TTL_S} s), single replica`, {}, async () => {
      const start = Date.now();
      await linksOf(only).etcd.blackhole();
      await sleep(start + 5_000 - Date.now());
      await linksOf(only).etcd.heal();
      const end = Date.now();
      await eventually('re-elected after the heal', () => isLeader(only), 15_000);
      return { faultStart: start, faultEnd: end, note: `stepped down ${stepDowns(only) - downsBefore}×, re-elected ${((Date.now() - end) / 1000).toFixed(2)} s after the heal (standby ${lastStandbySeconds(only) ?? '-'} s)` };
    });
    assert.equal(row.restarts, 0, 'the process did not exit');
    assert.ok(only.proc.isRunning());
    assert.ok(stepDowns(only) > downsBefore, 'the election (TTL 2 s) was lost and the replica stepped down');
    const values = await metricsOf(only);
    assert.ok(metric(values, 'etcd_registrar_leadership_changes_total{event="lost"}') >= 1);
    assert.equal(metric(values, 'etcd_registrar_leader'), 1);
    assert.ok(row.convergedS <= CONVERGE_AFTER_HEAL_S, `converged ${row.convergedS} s after the heal`);
  });

  it('etcd partition three times the lease TTL: keys expire by contract, every Ready pod is back within the bound, the other owner\'s key untouched, memory and queue bounded', async (t) => {
    await suite.ensureReplicas(1);
    const only = await suite.leader();
    const samples: Array<{ at: number; rss: number; queue: number }> = [];
    const seenIps = new Set<string>();
    const { row, from } = await suite.scenario(t, `etcd blackhole ${3 * LEASE_TTL_S} s (3 × lease TTL, time-compressed long partition)`, { liveDeletesAllowed: true, sameLease: false }, async () => {
      const start = Date.now();
      await linksOf(only).etcd.blackhole();
      while (Date.now() < start + 3 * LEASE_TTL_S * 1000) {
        const values = await metricsOf(only);
        samples.push({ at: Date.now() - start, rss: metric(values, 'etcd_registrar_process_resident_memory_bytes'), queue: metric(values, 'etcd_registrar_queue_depth') });
        for (const pod of suite.timeline.current()) if (pod.ip !== '') seenIps.add(pod.ip);
        await sleep(1_000);
      }
      await linksOf(only).etcd.heal();
      const end = Date.now();
      const half = (3 * LEASE_TTL_S * 1000) / 2;
      const peak = (list: typeof samples, pick: (s: (typeof samples)[number]) => number): number => Math.max(0, ...list.map(pick));
      const mb = (bytes: number): string => (bytes / 2 ** 20).toFixed(0);
      const first = samples.filter((s) => s.at < half);
      const second = samples.filter((s) => s.at >= half);
      return {
        faultStart: start, faultEnd: end,
        note: `peak RSS ${mb(peak(first, (s) => s.rss))} MB (first half) / ${mb(peak(second, (s) => s.rss))} MB (second half), peak queue ${peak(samples, (s) => s.queue)} keys (${seenIps.size} pod IPs seen)`,
      };
    });
    assert.equal(row.restarts, 0, 'the process did not exit');
    assert.ok(row.convergedS <= REREGISTER_AFTER_LONG_PARTITION_S, `every Ready pod registered again ${row.convergedS} s after the heal (bound ${REREGISTER_AFTER_LONG_PARTITION_S} s)`);
    // Bounded: the queue holds keys (one per pod IP at most), memory does not grow with time.
    const peakQueue = Math.max(...samples.map((s) => s.queue));
    assert.ok(peakQueue <= seenIps.size + 1, `queue ${peakQueue} keys for ${seenIps.size} pod IPs`);
    const half = (3 * LEASE_TTL_S * 1000) / 2;
    const firstPeak = Math.max(...samples.filter((s) => s.at < half).map((s) => s.rss));
    const secondPeak = Math.max(...samples.filter((s) => s.at >= half).map((s) => s.rss));
    assert.ok(secondPeak <= firstPeak + 32 * 2 ** 20, `RSS ${firstPeak} -> ${secondPeak} bytes: no growth with the partition's length`);
    // The other owner's key: never written or deleted.
    assert.deepEqual(suite.observer.events.slice(from).filter((e) => e.key === FOREIGN_KEY), []);
    assert.equal((await suite.observer.snapshot(FOREIGN_KEY)).get(FOREIGN_KEY)?.value, '10.99.0.1:86');
    const values = await metricsOf(only);
    assert.ok(metric(values, 'etcd_registrar_lease_changes_total') >= 1, 'the expired data lease was replaced (metric)');
    assert.ok(only.lines().some((line) => line['msg'] === 'data lease replaced: re-putting every registration'));
  });

  it('API server partition while etcd is fine: no live pod deregistered, no mass delete, resync after the heal', async (t) => {
    await suite.ensureReplicas(1);
    const only = await suite.leader();
    const restartsBefore = metric(await metricsOf(only), 'etcd_registrar_watch_restarts_total');
    let during: WatchedEvent[] = [];
    await suite.scenario(t, 'API server blackhole 10 s', {}, async () => {
      const start = Date.now();
      const from = suite.observer.events.length;
      await linksOf(only).api.blackhole();
      await sleep(start + 10_000 - Date.now());
      // What the controller deleted while it could not see the pods (writes already queued
      // before the cut may land in its first second).
      during = suite.observer.events.slice(from).filter((e) => e.type === 'delete' && e.at > start + 1_000 && e.key !== suite.sentinel);
      await linksOf(only).api.heal();
      return { faultStart: start, faultEnd: Date.now(), note: `${during.length} DELETE(s) during the partition` };
    });
    assert.deepEqual(during, [], 'a silent watch is not a deleted pod: nothing deleted while blind');
    assert.ok(metric(await metricsOf(only), 'etcd_registrar_watch_restarts_total') > restartsBefore, 'the pod watch was restarted (metric)');
  });

  it('latency 500 ms with jitter and 64 kB/s on both links: registration latency, no lease loss', async (t) => {
    await suite.ensureReplicas(1);
    const only = await suite.leader();
    const downsBefore = stepDowns(only);
    const { row } = await suite.scenario(t, 'latency 500±250 ms + 64 kB/s, etcd and API links', {}, async () => {
      const start = Date.now();
      for (const link of [linksOf(only).etcd, linksOf(only).api]) {
        await link.addToxic('latency', { type: 'latency', attributes: { latency: 500, jitter: 250 } }, 'downstream');
        await link.addToxicBothWays('bandwidth', { type: 'bandwidth', attributes: { rate: 64 } });
      }
      await sleep(start + 12_000 - Date.now());
      for (const link of [linksOf(only).etcd, linksOf(only).api]) await link.clearToxics();
      return { faultStart: start, faultEnd: Date.now(), note: `leadership lost ${stepDowns(only) - downsBefore}×` };
    });
    t.diagnostic(`registration under latency: longest wait of a new Ready pod ${row.maxRegisterS.toFixed(2)} s`);
  });

  it('connection resets every 3 s on both links: keepalives, watches and txns recover; audit records match etcd\'s changes exactly', async (t) => {
    await suite.ensureReplicas(1);
    const only = await suite.leader();
    await eventually('settled', () => suite.registryMatchesReadyPods(), 30_000);
    const sinceMs = Date.now();
    const revision = await revisionNow();
    let resets = 0;
    await suite.scenario(t, 'reset_peer every 3 s for 15 s, etcd and API links', {}, async () => {
      const start = Date.now();
      while (Date.now() < start + 15_000) {
        for (const link of [linksOf(only).etcd, linksOf(only).api]) await link.addToxic('reset', { type: 'reset_peer', attributes: { timeout: 0 } }, 'downstream');
        await sleep(300);
        for (const link of [linksOf(only).etcd, linksOf(only).api]) await link.clearToxics();
        resets++;
        await sleep(2_700);
      }
      return { faultStart: start, faultEnd: Date.now(), note: `${resets} resets of every connection` };
    });
    const { later, unexplained, unmatchedAudits } = suite.changesExplainedBy([only], sinceMs, revision);
    assert.deepEqual(unexplained, [], 'every change in etcd has its audit record');
    assert.deepEqual(unmatchedAudits, [], 'no audit record without its change (no duplicates)');
    t.diagnostic(`resets: ${later.length} changes in etcd, each with exactly one audit record`);
  });

  it('partition of the leader only (its etcd link) while a standby reaches etcd: the standby takes over, the fence holds, the old leader becomes a standby', async (t) => {
    await suite.ensureReplicas(2);
    const old = await suite.leader();
    const standby = suite.running().find((r) => r !== old);
    assert.ok(standby);
    const fenceKey = (old.lines().filter((line) => line['msg'] === 'elected leader').at(-1)?.['fence'] as { key?: string } | undefined)?.key;
    assert.ok(fenceKey?.startsWith(suite.electionPrefix), `the leader's campaign key (${fenceKey})`);
    let electedRevision = 0n;
    let cutAt = 0;
    const downsBefore = stepDowns(old);
    const { row } = await suite.scenario(t, 'leader\'s etcd link cut 8 s, standby reaches etcd', {}, async () => {
      cutAt = Date.now();
      await linksOf(old).etcd.blackhole();
      await eventually('the standby is elected', () => isLeader(standby), 15_000);
      const takeoverS = (Date.now() - cutAt) / 1000;
      let expired: WatchedEvent | undefined;
      await eventually('our election watch saw the old campaign key expire', () => (expired = suite.elections.events.find((e) => e.type === 'delete' && e.key === fenceKey)) !== undefined, 10_000);
      electedRevision = BigInt(expired!.revision);
      await sleep(cutAt + 8_000 - Date.now());
      await linksOf(old).etcd.heal();
      const end = Date.now();
      await eventually('the old leader stepped down', () => stepDowns(old) > downsBefore && !isLeader(old), 15_000);
      await old.waitReady(15_000);
      return { faultStart: cutAt, faultEnd: end, takeoverS };
    });
    assert.equal(row.restarts, 0, 'nobody exited');
    assert.ok(old.proc.isRunning() && !isLeader(old), 'the old leader is a standby now');
    const { later, unexplained } = suite.changesExplainedBy(suite.replicas.filter((r) => r !== old), cutAt, electedRevision);
    assert.deepEqual(unexplained, [], 'every change after the election was made by the new leader');
    const fenced = (old.audits() as unknown as Array<{ outcome: string; reason: string; time: string }>)
      .filter((r) => r.outcome === 'error' && r.reason.includes('fence lost') && r.time >= new Date(cutAt).toISOString()).length;
    t.diagnostic(`leader-only partition: ${later.length} changes after the election, all by the new leader; the old leader had ${fenced} write(s) rejected by the fence`);
  });
});
