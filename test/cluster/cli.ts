// `npm run cluster -- up|down|status --dir DIR`: a local cluster for people and scripts.
// `up` starts a detached supervisor process that owns the cluster (the same harness the
// tests use) and writes DIR/env once it is ready; `down` stops it and removes DIR.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { envFileText, startCluster, type ClusterOptions } from './cluster.ts';
import { ensureTools, ETCD_VERSION, KUBERNETES_VERSION } from './tools.ts';

const USAGE = `usage: npm run cluster -- <up|down|status> --dir DIR [options]
  up      start a cluster in the background; writes DIR/env (source it)
  down    stop every process of the cluster in DIR and remove DIR
  status  show whether the processes of the cluster in DIR are running
options of up:
  --nodes N               fake KWOK nodes (default 3)
  --registry-members 1|3  members of the registry etcd (default 1)
  --registry-tls          registry etcd over TLS with client certificates (DIR/registry/*.crt)
  --registry-auth         etcd auth: root and a limited etcd-registrar user (DIR/registry/password)
  --registry-key-root P   prefix the etcd-registrar user may write (default /)
  --registry-etcd-version V  etcd release of the registry, e.g. v3.5.35 (built and cached on first use)
  --kubernetes-version V     Kubernetes release of the control plane, e.g. v1.34.1 (built on first use, ~10+ min)`;

/** The `up` options, passed on to the supervisor as the same flags. */
export const UP_OPTIONS = {
  nodes: { type: 'string', default: '3' },
  'registry-members': { type: 'string', default: '1' },
  'registry-tls': { type: 'boolean', default: false },
  'registry-auth': { type: 'boolean', default: false },
  'registry-key-root': { type: 'string', default: '/' },
  'registry-etcd-version': { type: 'string', default: ETCD_VERSION },
  'kubernetes-version': { type: 'string', default: KUBERNETES_VERSION },
} as const;

export type UpOptions = Pick<ClusterOptions, 'nodes' | 'registryMembers' | 'registryTls' | 'registryAuth' | 'registryKeyRoot' | 'registryEtcdVersion' | 'kubernetesVersion'>;

export interface UpValues {
  nodes: string;
  'registry-members': string;
  'registry-tls': boolean;
  'registry-auth': boolean;
  'registry-key-root': string;
  'registry-etcd-version': string;
  'kubernetes-version': string;
}

export function parseUpOptions(values: UpValues): UpOptions {
  const nodes = Number(values.nodes);
  if (!Number.isInteger(nodes) || nodes < 1) throw new Error(`--nodes: ${values.nodes} is not a positive integer`);
  const members = values['registry-members'];
  if (members !== '1' && members !== '3') throw new Error(`--registry-members: ${members} must be 1 or 3`);
  const keyRoot = values['registry-key-root'];
  if (!keyRoot.startsWith('/')) throw new Error(`--registry-key-root: ${keyRoot} must start with /`);
  for (const flag of ['registry-etcd-version', 'kubernetes-version'] as const) {
    if (!/^v\d+\.\d+\.\d+$/.test(values[flag])) throw new Error(`--${flag}: ${values[flag]} is not a release version like v1.2.3`);
  }
  return {
    nodes,
    registryMembers: members === '3' ? 3 : 1,
    registryTls: values['registry-tls'],
    registryAuth: values['registry-auth'],
    registryKeyRoot: keyRoot,
    registryEtcdVersion: values['registry-etcd-version'],
    kubernetesVersion: values['kubernetes-version'],
  };
}

export function upArgs(opts: UpOptions): string[] {
  return [
    '--nodes', String(opts.nodes ?? 3),
    '--registry-members', String(opts.registryMembers ?? 1),
    '--registry-key-root', opts.registryKeyRoot ?? '/',
    '--registry-etcd-version', opts.registryEtcdVersion ?? ETCD_VERSION,
    '--kubernetes-version', opts.kubernetesVersion ?? KUBERNETES_VERSION,
    ...(opts.registryTls === true ? ['--registry-tls'] : []),
    ...(opts.registryAuth === true ? ['--registry-auth'] : []),
  ];
}

const UP_TIMEOUT_MS = 120_000;

interface PidEntry {
  name: string;
  pid: number;
}

const files = (dir: string) => ({
  env: resolve(dir, 'env'),
  pids: resolve(dir, 'pids'),
  supervisorLog: resolve(dir, 'supervisor.log'),
});

function readPids(dir: string): PidEntry[] {
  const path = files(dir).pids;
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((line) => {
      const [name = '?', pid = '0'] = line.trim().split(/\s+/);
      return { name, pid: Number(pid) };
    });
}

/** True if `pid` is a live process started for `dir` (guards against pid reuse and zombies). */
function belongsToCluster(pid: number, dir: string): boolean {
  try {
    const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return args.some((arg) => arg === dir || arg.includes(`${dir}/`));
  } catch {
    return false;
  }
}

async function serve(dir: string, opts: UpOptions): Promise<void> {
  const cluster = await startCluster({ ...opts, dir, log: (line) => console.log(line) });
  const pids = [{ name: 'supervisor', pid: process.pid }, ...cluster.processes()];
  await writeFile(files(dir).pids, pids.map((p) => `${p.name} ${p.pid}`).join('\n') + '\n');
  // Written last: its presence tells `up` that the cluster is ready.
  // 0600: with --registry-auth it holds the registry's root password.
  await writeFile(files(dir).env, envFileText(cluster), { mode: 0o600 });
  console.log('cluster ready; stop it with SIGTERM (npm run cluster -- down)');
  // The harness's signal handlers kill the processes and remove DIR on SIGTERM.
  setInterval(() => undefined, 1 << 30);
}

async function up(dir: string, opts: UpOptions): Promise<number> {
  if (readPids(dir).some((p) => belongsToCluster(p.pid, dir))) {
    console.error(`a cluster is already running in ${dir} (npm run cluster -- down --dir ${dir})`);
    return 1;
  }
  // Built here, with progress on this terminal, rather than silently in the supervisor.
  await ensureTools();
  await ensureTools(undefined, { etcd: opts.registryEtcdVersion, kubernetes: opts.kubernetesVersion });
  await mkdir(dir, { recursive: true });
  const { env, supervisorLog } = files(dir);
  await rm(env, { force: true });
  // Kept open: if the supervisor fails it removes DIR, but the log stays readable here.
  const log = openSync(supervisorLog, 'a+');
  const child = spawn(process.execPath, [import.meta.filename, 'serve', '--dir', dir, ...upArgs(opts)], {
    detached: true,
    stdio: ['ignore', log, log],
  });
  child.unref();
  const deadline = Date.now() + UP_TIMEOUT_MS;
  while (!existsSync(env)) {
    if (child.exitCode !== null || child.signalCode !== null || Date.now() > deadline) {
      console.error(`cluster failed to start in ${dir}; last lines of its log:\n${tailFd(log, 30)}`);
      if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, 'SIGTERM');
      return 1;
    }
    await sleep(200);
  }
  closeSync(log);
  console.log(`cluster up in ${dir}
  source ${env}
  "$KUBECTL" get nodes           # admin kubeconfig via $KUBECONFIG
  "$ETCDCTL" endpoint health     # registry etcd via $ETCDCTL_* (root with --registry-auth)
  npm run cluster -- down --dir ${dir}`);
  return 0;
}

function tailFd(fd: number, lines: number): string {
  const buf = Buffer.alloc(fstatSync(fd).size);
  readSync(fd, buf, 0, buf.length, 0);
  return buf.toString('utf8').trimEnd().split('\n').slice(-lines).join('\n');
}

async function down(dir: string): Promise<number> {
  const entries = readPids(dir);
  const supervisor = entries.find((e) => e.name === 'supervisor');
  if (supervisor !== undefined && belongsToCluster(supervisor.pid, dir)) {
    process.kill(supervisor.pid, 'SIGTERM');
  }
  const deadline = Date.now() + 15_000;
  let alive = entries.filter((e) => belongsToCluster(e.pid, dir));
  while (alive.length > 0 && Date.now() < deadline) {
    await sleep(100);
    alive = alive.filter((e) => belongsToCluster(e.pid, dir));
  }
  // The supervisor may have been killed hard; do not leave its children behind.
  for (const e of alive) {
    console.error(`killing leftover ${e.name} (pid ${e.pid})`);
    process.kill(e.pid, 'SIGKILL');
  }
  await rm(dir, { recursive: true, force: true, maxRetries: 3 });
  console.log(entries.length > 0 ? `cluster in ${dir} stopped` : `no cluster in ${dir}; removed it`);
  return 0;
}

function status(dir: string): number {
  const entries = readPids(dir);
  if (entries.length === 0) {
    console.log(`no cluster in ${dir}`);
    return 1;
  }
  let allUp = true;
  for (const e of entries) {
    const running = belongsToCluster(e.pid, dir);
    allUp &&= running;
    console.log(`${e.name.padEnd(24)} pid ${String(e.pid).padEnd(8)} ${running ? 'running' : 'NOT RUNNING'}`);
  }
  if (existsSync(files(dir).env)) console.log(`\n${readFileSync(files(dir).env, 'utf8')}`);
  return allUp ? 0 : 1;
}

async function main(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { dir: { type: 'string' }, help: { type: 'boolean' }, ...UP_OPTIONS },
  });
  const [command] = positionals;
  if (values.help === true || command === undefined || values.dir === undefined) {
    console.error(USAGE);
    return values.help === true ? 0 : 2;
  }
  const dir = resolve(values.dir);
  switch (command) {
    case 'up':
      return up(dir, parseUpOptions(values));
    case 'down':
      return down(dir);
    case 'status':
      return status(dir);
    case 'serve':
      await serve(dir, parseUpOptions(values));
      return -1;
    default:
      console.error(USAGE);
      return 2;
  }
}

if (import.meta.main) {
  try {
    const code = await main(process.argv.slice(2));
    if (code >= 0) process.exit(code);
  } catch (err) {
    console.error(err instanceof Error ? err.message : String(err));
    process.exit(1);
  }
}
