// A disposable etcd member on loopback ports, for tests and the local cluster.
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  freePort,
  isAddressInUse,
  ownDir,
  releaseDir,
  spawnManaged,
  waitFor,
  type ManagedProcess,
} from './process.ts';
import { toolPath, versionOverridesFromEnv } from './tools.ts';

export interface EtcdOptions {
  /** Home of this member (data dir and log go inside); a fresh temp dir by default. */
  dir?: string;
  name?: string;
  clientPort?: number;
  peerPort?: number;
  /**
   * Full member list `name=peerURL,...` for a multi-member cluster; defaults to this
   * member alone. With several members, each must be started before any is healthy,
   * so pass `waitReady: false` and wait on all of them afterwards.
   */
  initialCluster?: string;
  waitReady?: boolean;
  /** Serve clients over TLS with client-certificate auth (peers stay plain http). */
  tls?: EtcdTls;
  extraArgs?: string[];
  startTimeoutMs?: number;
  /**
   * etcd release to run (built and cached per version by `npm run tools`); default
   * $ETCD_REGISTRAR_REGISTRY_ETCD_VERSION, else ETCD_VERSION.
   */
  version?: string | undefined;
}

export interface EtcdTls {
  /** Serving certificate (must name 127.0.0.1) and its key. */
  certFile: string;
  keyFile: string;
  /** CA that client certificates must chain to (`--client-cert-auth`). */
  trustedCaFile: string;
}

export interface EtcdServer {
  readonly name: string;
  /** Client URLs, e.g. ['http://127.0.0.1:23790'] (https:// with `tls`). */
  readonly endpoints: string[];
  /**
   * Plain-http base URL of /health and /metrics: the client URL, or with `tls` a separate
   * loopback listener (--listen-metrics-urls), so probes need no client certificate.
   */
  readonly metricsUrl: string;
  readonly peerUrl: string;
  readonly dir: string;
  readonly dataDir: string;
  readonly logPath: string;
  /** Pid of the current etcd process (changes on restart). */
  readonly pid: number;
  isRunning(): boolean;
  /** Resolves once /health reports true. */
  waitHealthy(timeoutMs?: number): Promise<void>;
  /** SIGTERM and wait for exit. */
  stop(): Promise<void>;
  /** Sends a signal (default SIGKILL); for SIGKILL/SIGTERM/SIGINT waits for exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts again on the same ports and data dir and waits until healthy. */
  start(): Promise<void>;
  /** Stops and removes the directory. */
  destroy(): Promise<void>;
  /**
   * Stops, removes the data dir and starts again as a new member of an existing cluster
   * (same name, ports and peers): the second half of a member replacement, after the old
   * member was removed and the new one added (see etcd-cluster.ts replaceEtcdMember).
   */
  rejoinEmpty(): Promise<void>;
}

const TERMINATING: ReadonlySet<NodeJS.Signals> = new Set(['SIGKILL', 'SIGTERM', 'SIGINT']);

export async function startEtcd(opts: EtcdOptions = {}): Promise<EtcdServer> {
  const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'etcd-')));
  await mkdir(dir, { recursive: true });
  ownDir(dir);
  const freshData = !existsSync(join(dir, 'data'));
  const portsFixed = opts.clientPort !== undefined || opts.peerPort !== undefined;
  for (let attempt = 1; ; attempt++) {
    const clientPort = opts.clientPort ?? (await freePort());
    const peerPort = opts.peerPort ?? (await freePort());
    const metricsPort = opts.tls === undefined ? undefined : await freePort();
    const server = new EtcdMember(dir, opts, clientPort, peerPort, metricsPort);
    try {
      await server.start(opts.waitReady ?? true);
      return server;
    } catch (err) {
      await server.kill('SIGKILL');
      // Another process may have grabbed a port between the probe and etcd's bind.
      if (portsFixed || attempt >= 3 || !isAddressInUse(server.logPath)) {
        if (opts.dir === undefined) await rm(dir, { recursive: true, force: true });
        releaseDir(dir);
        throw err;
      }
      // The failed attempt may have recorded its (other) peer URL in a new data dir.
      if (freshData) await rm(server.dataDir, { recursive: true, force: true });
    }
  }
}

class EtcdMember implements EtcdServer {
  readonly name: string;
  readonly endpoints: string[];
  readonly metricsUrl: string;
  readonly peerUrl: string;
  readonly dataDir: string;
  readonly logPath: string;
  readonly dir: string;
  readonly #args: string[];
  readonly #opts: EtcdOptions;
  #proc: ManagedProcess | undefined;
  /** Joining a running cluster with an empty data dir (after rejoinEmpty). */
  #joinExisting = false;

  constructor(dir: string, opts: EtcdOptions, clientPort: number, peerPort: number, metricsPort?: number) {
    this.dir = dir;
    this.#opts = opts;
    this.name = opts.name ?? 'etcd';
    const tls = opts.tls;
    const clientUrl = `${tls === undefined ? 'http' : 'https'}://127.0.0.1:${clientPort}`;
    this.endpoints = [clientUrl];
    this.metricsUrl = metricsPort === undefined ? clientUrl : `http://127.0.0.1:${metricsPort}`;
    this.peerUrl = `http://127.0.0.1:${peerPort}`;
    this.dataDir = join(dir, 'data');
    this.logPath = join(dir, 'etcd.log');
    this.#args = [
      `--name=${this.name}`,
      `--data-dir=${this.dataDir}`,
      `--listen-client-urls=${clientUrl}`,
      `--advertise-client-urls=${clientUrl}`,
      `--listen-peer-urls=${this.peerUrl}`,
      `--initial-advertise-peer-urls=${this.peerUrl}`,
      `--initial-cluster=${opts.initialCluster ?? `${this.name}=${this.peerUrl}`}`,
      '--initial-cluster-state=new',
      // Disposable test data: durability is not worth the fsync latency.
      '--unsafe-no-fsync',
      '--log-level=warn',
      ...(tls === undefined
        ? []
        : [
            `--cert-file=${tls.certFile}`,
            `--key-file=${tls.keyFile}`,
            `--trusted-ca-file=${tls.trustedCaFile}`,
            '--client-cert-auth',
            `--listen-metrics-urls=${this.metricsUrl}`,
          ]),
      // A lone member elects itself after one election timeout: keep it short (start and
      // restart in ~0.1 s instead of ~0.6 s). Multi-member clusters keep etcd's defaults,
      // which tolerate a loaded machine without spurious leader changes.
      ...(opts.initialCluster === undefined ? ['--heartbeat-interval=10', '--election-timeout=100'] : []),
      ...(opts.extraArgs ?? []),
    ];
  }

  get pid(): number {
    return this.#proc?.pid ?? -1;
  }

  isRunning(): boolean {
    return this.#proc?.isRunning() ?? false;
  }

  async start(waitReady = true): Promise<void> {
    if (this.isRunning()) return;
    const binary = toolPath('etcd', this.#opts.version ?? versionOverridesFromEnv().etcd);
    if (!existsSync(binary)) {
      const version = this.#opts.version ?? versionOverridesFromEnv().etcd;
      const flag = version === undefined ? '' : ` -- --registry-etcd-version ${version}`;
      throw new Error(`etcd binary not found at ${binary}: run \`npm run tools${flag}\` first`);
    }
    this.#proc = spawnManaged({
      name: `etcd ${this.name}`,
      command: binary,
      args: this.#joinExisting ? this.#args.map((arg) => (arg === '--initial-cluster-state=new' ? '--initial-cluster-state=existing' : arg)) : this.#args,
      logPath: this.logPath,
    });
    if (waitReady) await this.waitHealthy(this.#opts.startTimeoutMs);
  }

  async waitHealthy(timeoutMs = 20_000): Promise<void> {
    const url = `${this.metricsUrl}/health`;
    const proc = this.#proc;
    if (proc === undefined) throw new Error(`etcd ${this.name} is not started`);
    await waitFor(
      `${url} to report healthy`,
      async () => {
        const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
        const body = (await res.json()) as { health?: unknown };
        return res.ok && body.health === 'true';
      },
      { timeoutMs, intervalMs: 50, process: proc },
    );
  }

  async stop(): Promise<void> {
    await this.#proc?.stop();
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const proc = this.#proc;
    if (proc === undefined) return;
    proc.signal(signal);
    if (TERMINATING.has(signal)) await proc.exited;
  }

  async rejoinEmpty(): Promise<void> {
    await this.stop();
    await rm(this.dataDir, { recursive: true, force: true });
    this.#joinExisting = true;
    await this.start();
  }

  async destroy(): Promise<void> {
    await this.stop();
    await rm(this.dir, { recursive: true, force: true });
    releaseDir(this.dir);
  }
}

