// A real CoreDNS (built from its Go module by `npm run tools`) serving one zone from the
// registry etcd through its etcd plugin, on a loopback port; plus the two resolvers the
// tests ask it with: Debian's `dig` (what a person would run) and Node's c-ares resolver
// (cheap enough to poll every few milliseconds when measuring).
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { Resolver } from 'node:dns/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import type { Cluster } from '../cluster/cluster.ts';
import { freePort, spawnManaged, waitFor, type ManagedProcess } from '../cluster/process.ts';
import { ensureTools, toolPath } from '../cluster/tools.ts';

const run = promisify(execFile);

/** The read-only etcd user CoreDNS logs in as when the registry has authentication on. */
export const COREDNS_ETCD_USER = 'coredns';

export interface CoreDnsOptions {
  readonly cluster: Cluster;
  /** Zone served from etcd, e.g. svc.example.org. */
  readonly zone: string;
  /** Directory for the Corefile and the log. */
  readonly dir: string;
}

export interface CoreDns {
  readonly port: number;
  readonly address: string;
  readonly proc: ManagedProcess;
  stop(): Promise<void>;
}

/**
 * Starts CoreDNS with only the etcd plugin for `zone` (no cache plugin: answers reflect etcd
 * as of each query, so what a client sees is bounded by the records' TTL alone). With a TLS
 * or password-protected registry it uses the client certificate and its own read-only user.
 */
export async function startCoreDns(opts: CoreDnsOptions): Promise<CoreDns> {
  await ensureTools(['coredns']);
  const { cluster, zone, dir } = opts;
  const port = await freePort();
  const plugin = [`    path /skydns`, `    endpoint ${cluster.registryEndpoints.join(' ')}`];
  const tls = cluster.registryTlsFiles;
  if (tls !== undefined) plugin.push(`    tls ${tls.certFile} ${tls.keyFile} ${tls.caFile}`);
  if (cluster.registryAuth !== undefined) {
    const password = await createReadOnlyUser(cluster);
    plugin.push(`    credentials ${COREDNS_ETCD_USER} ${password}`);
  }
  const corefile = [
    `${zone}:${String(port)} {`,
    '  bind 127.0.0.1',
    '  errors',
    `  etcd ${zone} {`,
    ...plugin.map((line) => `  ${line}`),
    '  }',
    '}',
    '',
  ].join('\n');
  const corefilePath = join(dir, 'Corefile');
  await writeFile(corefilePath, corefile, { mode: 0o600 });
  const proc = spawnManaged({
    name: 'coredns',
    command: toolPath('coredns'),
    args: ['-conf', corefilePath],
    logPath: join(dir, 'coredns.log'),
  });
  const address = `127.0.0.1:${String(port)}`;
  // Ready once it answers for the zone (SOA comes from the plugin itself, no etcd key needed).
  await waitFor(`CoreDNS on ${address} answering for ${zone}`, async () => (await dig(port, 'SOA', zone)).length > 0, {
    timeoutMs: 20_000,
    intervalMs: 100,
    process: proc,
  });
  return { port, address, proc, stop: () => proc.stop(3000) };
}

/** A `coredns` etcd user that may read /skydns/ only (what the etcd plugin needs). */
async function createReadOnlyUser(cluster: Cluster): Promise<string> {
  const admin = cluster.registryAdmin();
  const password = randomBytes(18).toString('base64url');
  await admin.role(COREDNS_ETCD_USER).create();
  await admin.role(COREDNS_ETCD_USER).grant({ permission: 'Read', range: admin.range({ prefix: '/skydns/' }) });
  await admin.user(COREDNS_ETCD_USER).create(password);
  await admin.user(COREDNS_ETCD_USER).addRole(COREDNS_ETCD_USER);
  return password;
}

const DIG = '/usr/bin/dig';

/**
 * `dig +short` through CoreDNS: the answer lines, sorted ([] for NXDOMAIN/no data). Fails
 * with one line naming the package when dig is missing.
 */
export async function dig(port: number, type: 'A' | 'AAAA' | 'SRV' | 'SOA', name: string): Promise<string[]> {
  if (!existsSync(DIG)) throw new Error('dig not found: install the Debian package dnsutils (npm run tools does, as root)');
  const { stdout } = await run(DIG, ['@127.0.0.1', '-p', String(port), '+short', '+tries=1', '+time=2', type, name]);
  return stdout.split('\n').map((line) => line.trim()).filter((line) => line !== '' && !line.startsWith(';')).sort();
}

/** Node's c-ares resolver pointed at CoreDNS only: no cache, one try, short timeout. */
export function resolverFor(port: number): Resolver {
  const resolver = new Resolver({ timeout: 1000, tries: 1 });
  resolver.setServers([`127.0.0.1:${String(port)}`]);
  return resolver;
}

/** The IPv4 addresses of `name` ([] on NXDOMAIN / no data), sorted. */
export async function resolveA(resolver: Resolver, name: string): Promise<string[]> {
  try {
    return (await resolver.resolve4(name)).sort();
  } catch (error) {
    if (isNoAnswer(error)) return [];
    throw error;
  }
}

function isNoAnswer(error: unknown): boolean {
  const code = (error as { code?: string }).code;
  return code === 'ENOTFOUND' || code === 'ENODATA';
}
