// A multi-member etcd cluster on loopback ports, and the leader helpers chaos tests need:
// which member leads, and moving leadership on purpose.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Etcd3 } from 'etcd3';
import { startEtcd, type EtcdOptions, type EtcdServer } from './etcd.ts';
import { freePort, isAddressInUse, waitFor } from './process.ts';

export interface EtcdClusterOptions {
  /** Each member lives in DIR/<name>. */
  dir: string;
  /** Member names; their number is the cluster size. */
  names: readonly string[];
  /** Passed to every member (TLS, extra flags, timeouts). */
  member?: Pick<EtcdOptions, 'tls' | 'extraArgs' | 'startTimeoutMs'>;
  /** Time for all members to report healthy; default 30 s. */
  timeoutMs?: number;
}

/**
 * Starts all members of a new cluster and waits until every one is healthy. Ports are
 * picked here because each member must know every peer URL; on a port clash (another
 * process bound one in between) the whole cluster is started again on new ports.
 */
export async function startEtcdCluster(opts: EtcdClusterOptions): Promise<EtcdServer[]> {
  for (let attempt = 1; ; attempt++) {
    const ports = await Promise.all(opts.names.map(async () => ({ client: await freePort(), peer: await freePort() })));
    const initialCluster = opts.names.map((n, i) => `${n}=http://127.0.0.1:${ports[i]?.peer ?? 0}`).join(',');
    const members: EtcdServer[] = [];
    try {
      for (const [i, name] of opts.names.entries()) {
        members.push(
          await startEtcd({
            ...opts.member,
            dir: join(opts.dir, name),
            name,
            clientPort: ports[i]?.client ?? 0,
            peerPort: ports[i]?.peer ?? 0,
            initialCluster,
            // No member is healthy before a quorum has started.
            waitReady: false,
          }),
        );
      }
      await Promise.all(members.map((m) => m.waitHealthy(opts.timeoutMs ?? 30_000)));
      return members;
    } catch (err) {
      await Promise.all(members.map((m) => m.kill('SIGKILL')));
      const clash = members.some((m) => isAddressInUse(m.logPath));
      // A half-formed cluster's data dirs record its member ids: start again from scratch.
      await Promise.all(members.map((m) => m.destroy()));
      if (!clash || attempt >= 3) throw err;
      await Promise.all(opts.names.map((n) => rm(join(opts.dir, n), { recursive: true, force: true })));
    }
  }
}

/** Opens a client to one endpoint; the helpers close it. Carries TLS/auth as needed. */
/**
 * A client of one member. `once`: each call is sent one time, without etcd3's retries and
 * circuit breaker, for a caller that retries by itself (etcd3's breaker opens after three
 * refused calls and then refuses every call for 5 s, hiding etcd's own answer).
 */
export type ConnectFn = (endpoint: string, once?: boolean) => Etcd3;

interface MemberStatus {
  member: EtcdServer;
  id: string;
  leader: string;
}

/** Runs `use` with a client of `member` of its own, closed after. */
async function withClient<T>(connect: ConnectFn, member: EtcdServer, use: (client: Etcd3) => Promise<T>, once = false): Promise<T> {
  const client = connect(member.endpoints[0] ?? '', once);
  try {
    return await use(client);
  } finally {
    client.close();
  }
}

async function memberStatus(member: EtcdServer, connect: ConnectFn): Promise<MemberStatus> {
  const status = await withClient(connect, member, (client) => client.maintenance.status({ deadline: Date.now() + 2_000 }));
  return { member, id: status.header.member_id, leader: status.leader };
}

/**
 * The member every responding member agrees is the leader. Waits (up to `timeoutMs`) while
 * an election is in progress, e.g. right after the leader was killed. Members that do not
 * answer within 2 s (stopped with SIGSTOP, say) are left out of the vote.
 */
export async function etcdLeader(
  members: readonly EtcdServer[],
  connect: ConnectFn,
  timeoutMs = 15_000,
): Promise<EtcdServer> {
  return waitFor(
    'an etcd leader all running members agree on',
    async () => {
      const running = members.filter((m) => m.isRunning());
      const answers = await Promise.allSettled(running.map((m) => memberStatus(m, connect)));
      const statuses = answers.flatMap((a) => (a.status === 'fulfilled' ? [a.value] : []));
      const leaderId = statuses[0]?.leader;
      if (leaderId === undefined || leaderId === '0') return undefined;
      if (statuses.some((s) => s.leader !== leaderId)) return undefined;
      return statuses.find((s) => s.id === leaderId)?.member;
    },
    { timeoutMs, intervalMs: 100 },
  );
}

/**
 * Hands leadership to `to` (default: the first running member that is not the leader)
 * with etcd's MoveLeader call, and resolves with the new leader once all agree.
 */
export async function moveEtcdLeader(
  members: readonly EtcdServer[],
  connect: ConnectFn,
  to?: EtcdServer,
  timeoutMs = 15_000,
): Promise<EtcdServer> {
  const leader = await etcdLeader(members, connect, timeoutMs);
  const target = to ?? members.find((m) => m !== leader && m.isRunning());
  if (target === undefined) throw new Error('no running member to move the etcd leader to');
  if (!members.includes(target)) throw new Error(`${target.name} is not a member of this cluster`);
  if (target === leader) return leader;
  const { id } = await memberStatus(target, connect);
  // MoveLeader must be sent to the current leader.
  await withClient(connect, leader, (client) => client.maintenance.moveLeader({ targetID: id }, { deadline: Date.now() + timeoutMs }));
  return waitFor(
    `etcd leadership to move to ${target.name}`,
    async () => ((await etcdLeader(members, connect, timeoutMs)) === target ? target : undefined),
    { timeoutMs, intervalMs: 100 },
  );
}

/**
 * Replaces `victim` the way an operator replaces a failed member: remove it from the
 * cluster (through another member), wipe its data, add it back as a new member and start it
 * empty; it catches up from the leader. Resolves once it is healthy again. Ports and
 * endpoints stay the same, so clients need no new configuration.
 */
export async function replaceEtcdMember(members: readonly EtcdServer[], victim: EtcdServer, connect: ConnectFn, timeoutMs = 30_000): Promise<void> {
  const other = members.find((m) => m !== victim && m.isRunning());
  if (other === undefined) throw new Error('no other running member to replace through');
  const { id } = await memberStatus(victim, connect);
  // etcd refuses a removal ("unhealthy cluster") until its leader has been connected to every
  // other member for 5 s, e.g. right after a leadership move: retry until it accepts, on a
  // client that sends each call once (CI saw etcd3's breaker open on these refusals).
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await withClient(connect, other, (client) => client.cluster.memberRemove({ ID: id }, { deadline }), true);
      break;
    } catch (err) {
      if (!(err instanceof Error && err.message.includes('unhealthy cluster')) || Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
  await victim.stop();
  await withClient(connect, other, (client) => client.cluster.memberAdd({ peerURLs: [victim.peerUrl] }, { deadline: Date.now() + timeoutMs }));
  await victim.rejoinEmpty();
}
