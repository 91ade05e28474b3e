// Chaos suite (issue #5): faults injected into the real controller replicas, the real
// kube-apiserver and the real registry etcd while pods churn, watched by observers that are
// independent of the controller: an etcd watch on the key root that records every PUT and
// DELETE, and a Kubernetes pod watch that records when each pod was serving. After each
// scenario: how many DELETEs removed a live pod's key (rule in chaos/timeline.ts), and how
// long etcd took to hold exactly the Ready pods' keys again. A table of the figures is
// printed at the end. The machinery is in chaos/suite.ts (shared with faults.test.ts).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { eventually, type ControllerProcess, type WatchedEvent } from './support.ts';
import { ChaosSuite, GRACE_MS, iso, isLeader, sleep, stepDowns } from './chaos/suite.ts';
import type { PodView } from './chaos/timeline.ts';

const LEASE_TTL_S = 6;
const ELECTION_TTL_S = 2;
// Three registry members, as in production: member kills and leader changes are scenarios.
const suite = new ChaosSuite({ name: 'chaos', leaseTtlS: LEASE_TTL_S, electionTtlS: ELECTION_TTL_S, cluster: { registryMembers: 3 } });
const ELECTION_PREFIX = suite.electionPrefix;
const keyOf = suite.keyOf;
const scenario = suite.scenario.bind(suite);
const leader = suite.leader.bind(suite);
const running = (): ControllerProcess[] => suite.running();
const ensureReplicas = suite.ensureReplicas.bind(suite);
const startReplica = suite.startReplica.bind(suite);
const stopReplica = suite.stopReplica.bind(suite);
const killReplica = suite.killReplica.bind(suite);

before(async () => {
  await suite.setUp();
  await ensureReplicas(2);
});

after(async () => {
  await suite.tearDown('chaos suite');
});

describe('chaos', () => {
  it('the observer flags a DELETE of a live key (canary), and the controller restores the key', async (t) => {
    await eventually('initial registrations', () => suite.registryMatchesReadyPods(), 30_000);
    // A DELETE counts as live only if the pod served from a grace period before it (the suite's
    // pod watch may see Ready after the controller did): take a pod serving for longer than that.
    const servingLong = (): PodView | undefined => suite.timeline.current().find((pod) => pod.serving && Date.now() - pod.since > 2 * GRACE_MS);
    await eventually('a pod serving for twice the grace period', () => servingLong() !== undefined, 30_000);
    const live = servingLong();
    assert.ok(live, 'a serving pod');
    const key = keyOf(live.ip);
    const from = suite.observer.events.length;
    // Someone else deletes a live key behind the controller's back.
    await suite.observer.client.delete().key(key).exec();
    await eventually('DELETE seen', () => suite.observer.events.slice(from).some((e) => e.type === 'delete' && e.key === key));
    const deletes = suite.observer.events.slice(from).filter((e) => e.type === 'delete');
    await sleep((deletes.at(-1)?.at ?? 0) + GRACE_MS + 100 - Date.now());
    assert.deepEqual(suite.timeline.liveDeletes(deletes, GRACE_MS, keyOf).map((d) => d.pod), [live.name]);
    const deletedAt = deletes[0]?.at ?? Date.now();
    await eventually('the key restored by a reconcile', async () => (await suite.observer.snapshot(key)).get(key)?.value === `${live.ip}:86`, 20_000);
    t.diagnostic(`canary: key restored ${((Date.now() - deletedAt) / 1000).toFixed(1)} s after a foreign DELETE (reconcile interval 5 s)`);
  });

  it('SIGKILL of the leader with a standby', async (t) => {
    await ensureReplicas(2);
    await scenario(t, 'SIGKILL leader, standby takes over', {}, async () => {
      const victim = await leader();
      const killedAt = Date.now();
      await killReplica(victim);
      await suite.createProbe('probe-kill');
      const takeoverS = await suite.probeRegisteredAfter('probe-kill', killedAt);
      // "Within a few seconds": the election TTL plus a generous margin for a loaded machine.
      assert.ok(takeoverS <= ELECTION_TTL_S + 8, `new pod registered ${takeoverS} s after the leader was killed`);
      const successor = await leader();
      assert.notEqual(successor, victim);
      return { faultStart: killedAt, faultEnd: killedAt, takeoverS };
    });
  });

  it('rolling restart of two replicas (surge 1, unavailable 0)', async (t) => {
    await ensureReplicas(2);
    const stops: Array<{ name: string; leader: boolean; code: number | null; hung: boolean }> = [];
    await scenario(t, 'rolling restart of 2 replicas', {}, async () => {
      const start = Date.now();
      // A ReplicaSet scales down its newest pod first: usually the standby, then the leader.
      const old = running().reverse();
      for (const replica of old) {
        await startReplica();
        const wasLeader = isLeader(replica);
        stops.push({ name: replica.proc.name, leader: wasLeader, ...(await stopReplica(replica)) });
      }
      await leader();
      const hung = stops.filter((s) => s.hung).length;
      return { faultStart: start, faultEnd: Date.now(), ...(hung > 0 ? { note: `${hung} replica(s) ignored SIGTERM for 10 s and were killed` } : {}) };
    });
    assert.deepEqual(stops.filter((s) => s.hung || s.code !== 0), [], 'every replica (standby or leader) exits 0 promptly on SIGTERM');
  });

  it('SIGKILL of a single replica, restarted within the TTL', async (t) => {
    await ensureReplicas(1);
    await scenario(t, `SIGKILL single replica, back after 1 s (TTL ${LEASE_TTL_S} s)`, {}, async () => {
      const only = await leader();
      const killedAt = Date.now();
      await killReplica(only);
      await sleep(1000);
      const back = Date.now();
      const replacement = await startReplica();
      await eventually('the replacement leads', () => isLeader(replacement));
      // The scenario needs the replacement running before the lease can expire: as early as
      // TTL − TTL/3 after the kill (the last keepalive may be one interval, TTL/3, old). On a
      // starved machine the harness itself can miss that (seen: 16 s, and 4.9 s with TTL 6 s,
      // from spawn to the first log line).
      const firstLine = Date.parse(String(replacement.lines()[0]?.['time'] ?? ''));
      const gapS = (firstLine - killedAt) / 1000;
      return {
        faultStart: killedAt, faultEnd: back,
        note: `process up ${gapS.toFixed(1)} s after the kill, ready ${((Date.now() - back) / 1000).toFixed(1)} s after restart`,
        ...(gapS >= (LEASE_TTL_S * 2) / 3 - 0.5 ? { inconclusive: `the replacement process only started ${gapS.toFixed(1)} s after the kill (lease TTL ${LEASE_TTL_S} s)` } : {}),
      };
    });
  });

  it('kube-apiserver restart', async (t) => {
    await ensureReplicas(2);
    await scenario(t, 'kube-apiserver restart', {}, async () => {
      const start = Date.now();
      await suite.cluster.restartApiServer();
      return { faultStart: start, faultEnd: Date.now() };
    });
  });

  it('frozen leader (SIGSTOP past the election TTL, then SIGCONT): its writes are fenced off', async (t) => {
    await ensureReplicas(2);
    let fenced = 0;
    let old: ControllerProcess | undefined;
    let electedRevision = 0n;
    let frozenAt = 0;
    await scenario(t, `leader frozen ${ELECTION_TTL_S + 3} s (election TTL ${ELECTION_TTL_S} s)`, {}, async () => {
      old = await leader();
      const standby = running().find((r) => r !== old);
      assert.ok(standby);
      const fenceKey = (old.lines().find((line) => line['msg'] === 'elected leader')?.['fence'] as { key?: string } | undefined)?.key;
      assert.ok(fenceKey?.startsWith(ELECTION_PREFIX), `the old leader's campaign key (${fenceKey})`);
      const frozen = old;
      frozen.proc.signal('SIGSTOP');
      frozenAt = Date.now();
      let resumedAt = 0;
      try {
        await eventually('the standby is elected', () => isLeader(standby), 15_000);
        // etcd's view of the election: the old campaign key expired at this revision (our
        // election watch may hear of it a little after the standby did).
        let expired: WatchedEvent | undefined;
        await eventually('our election watch saw the old campaign key deleted', () => (expired = suite.elections.events.find((e) => e.type === 'delete' && e.key === fenceKey)) !== undefined, 10_000);
        assert.ok(expired);
        electedRevision = BigInt(expired.revision);
        // Keep it frozen while the new leader writes the churn's changes.
        await sleep(frozenAt + (ELECTION_TTL_S + 3) * 1000 - Date.now());
      } finally {
        // Never leave a stopped process behind, whatever failed above.
        resumedAt = Date.now();
        frozen.proc.signal('SIGCONT');
      }
      // The deposed leader steps down to standby: no exit, no restart, no cold start.
      const deposed = old;
      await eventually('the old leader stepped down to standby', () => stepDowns(deposed) > 0, 20_000);
      assert.ok(deposed.proc.isRunning(), 'the deposed leader keeps running as a standby');

      // (1) Nothing the old leader reports as applied after it resumed was applied after
      // the election (a txn answered while it was frozen was applied before).
      const oldAudits = old.audits() as unknown as Array<{ action: string; key: string; outcome: string; reason: string; time: string }>;
      const lateOk = oldAudits.filter((r) => r.outcome === 'ok' && r.action !== 'skip' && r.time >= iso(resumedAt));
      const afterElection = lateOk.filter((r) => !suite.observer.events.some((e) => e.key === r.key && BigInt(e.revision) < electedRevision && e.at >= frozenAt - 1000));
      assert.deepEqual(afterElection, [], 'no write of the old leader applied after the new election');
      fenced = oldAudits.filter((r) => r.outcome === 'error' && r.time >= iso(resumedAt) && r.reason.includes('fence lost')).length;

      return { faultStart: frozenAt, faultEnd: resumedAt, note: `old leader: ${lateOk.length} ok / ${fenced} fenced write(s) after SIGCONT` };
    });
    // (2) Independently, once everything settled: every change etcd made under the prefix
    // after the election is one the other replicas report as theirs; an unexplained one
    // would be the old leader's.
    const { later, unexplained } = suite.changesExplainedBy(suite.replicas.filter((r) => r !== old), frozenAt, electedRevision);
    assert.deepEqual(unexplained, [], 'every change after the election was made by the new leader');
    // (3) The fence at work, when the race on resume lets it show: writes the old leader had in
    // hand when it resumed go out before its lost election reaches it, and etcd refuses them
    // (most runs). When the lost election comes first, it tries none (seen once in CI). Both are
    // safe, and (1) and (2) hold either way; registry/election.test.ts refuses a stale fence
    // against a real etcd every time.
    const oldLeader = fenced > 0 ? `had ${fenced} write(s) rejected by the fence after SIGCONT` : 'saw its lost election before it wrote anything (no write to fence)';
    t.diagnostic(`fencing: ${later.length} changes in etcd after the election, all by the new leader; the old leader ${oldLeader}`);
  });

  it('registry etcd: SIGKILL of the leader member, restarted 3 s later', async (t) => {
    await ensureReplicas(2);
    await scenario(t, 'registry etcd leader member SIGKILL', {}, async () => {
      const victim = await suite.cluster.registryLeader();
      const start = Date.now();
      await victim.kill('SIGKILL');
      const successor = await suite.cluster.registryLeader();
      const electedS = (Date.now() - start) / 1000;
      assert.notEqual(successor, victim);
      await sleep(start + 3000 - Date.now());
      await victim.start();
      return { faultStart: start, faultEnd: Date.now(), note: `etcd leader ${victim.name} -> ${successor.name} in ${electedS.toFixed(1)} s` };
    });
  });

  it('registry etcd: leadership moved twice (MoveLeader)', async (t) => {
    await ensureReplicas(2);
    await scenario(t, 'registry etcd leader moved twice', {}, async () => {
      const start = Date.now();
      const path = [(await suite.cluster.registryLeader()).name];
      for (let i = 0; i < 2; i++) {
        path.push((await suite.cluster.moveRegistryLeader()).name);
        await sleep(1000);
      }
      return { faultStart: start, faultEnd: Date.now(), note: `etcd leader ${path.join(' -> ')}` };
    });
  });

  it('registry etcd: a member replaced (removed, wiped, added back empty)', async (t) => {
    await ensureReplicas(2);
    await scenario(t, 'registry etcd member replaced', {}, async () => {
      const leaderMember = await suite.cluster.registryLeader();
      const victim = suite.cluster.registryMembers.find((m) => m !== leaderMember);
      assert.ok(victim);
      const start = Date.now();
      await suite.cluster.replaceRegistryMember(victim);
      return { faultStart: start, faultEnd: Date.now(), note: `${victim.name} replaced in ${((Date.now() - start) / 1000).toFixed(1)} s` };
    });
  });

  it(`registry etcd down for twice the lease TTL (${2 * LEASE_TTL_S} s)`, async (t) => {
    await ensureReplicas(2);
    await scenario(t, `registry etcd down ${2 * LEASE_TTL_S} s (all 3 members)`, { liveDeletesAllowed: true, sameLease: false }, async () => {
      const start = Date.now();
      await Promise.all(suite.cluster.registryMembers.map((member) => member.stop()));
      await sleep(start + 2 * LEASE_TTL_S * 1000 - Date.now());
      // A member is healthy only once a quorum runs: start them together.
      await Promise.all(suite.cluster.registryMembers.map((member) => member.start()));
      return { faultStart: start, faultEnd: Date.now() };
    });
  });
});
