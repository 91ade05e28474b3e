// A real local Kubernetes control plane for tests and the sandbox: etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler and KWOK (kubelet for fake nodes), plus a
// separate etcd acting as the service registry. Everything runs on free loopback ports
// inside one directory that stop() removes.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Etcd3 } from 'etcd3';
import { noopPolicy } from '../../src/registry/client.ts';
import { startEtcd, type EtcdServer, type EtcdTls } from './etcd.ts';
import { etcdLeader, moveEtcdLeader, replaceEtcdMember, startEtcdCluster } from './etcd-cluster.ts';
import {
  makeClusterPki,
  makeRegistryPki,
  writeKubeconfig,
  type ClusterPki,
  type KeyPair,
  type RegistryPki,
} from './pki.ts';
import {
  freePort,
  ownDir,
  releaseDir,
  spawnManaged,
  waitFor,
  type ManagedProcess,
} from './process.ts';
import { ensureTools, ETCD_VERSION, KUBERNETES_VERSION, toolPath, toolVersion, versionOverridesFromEnv, type ToolName } from './tools.ts';

export const SERVICE_CIDR = '10.0.0.0/24';
export const POD_CIDR = '10.244.0.0/16';
const KWOK_STAGES = join(dirname(fileURLToPath(import.meta.url)), 'kwok-stages.yaml');

export interface ClusterOptions {
  /** Directory for all state (created if missing, removed by stop); a temp dir by default. */
  dir?: string;
  /** Number of fake KWOK nodes, spread over zones zone-a, zone-b, zone-c. Default 3. */
  nodes?: number;
  /** Progress lines (e.g. console.error); silent by default. */
  log?: (line: string) => void;
  /** Per-component readiness timeout. */
  startTimeoutMs?: number;
  /**
   * Members of the registry etcd: 1 (default) or a 3-member cluster on loopback, for
   * chaos tests (see registryLeader, moveRegistryLeader, EtcdServer.kill/start).
   */
  registryMembers?: 1 | 3;
  /**
   * The registry etcd serves clients over TLS only and requires a client certificate
   * from its own CA (DIR/registry/ca.crt; see Cluster.registryPki). Peers stay http.
   */
  registryTls?: boolean;
  /**
   * etcd authentication on the registry: user `root` (role root) and user `etcd-registrar`
   * limited to what the controller needs (see registryAuth on Cluster). Passwords are
   * random, in DIR/registry/password and DIR/registry/root-password (mode 0600).
   */
  registryAuth?: boolean;
  /** Key root the etcd-registrar user may write under (the controller's --key-root); default "/". */
  registryKeyRoot?: string;
  /**
   * Versions for the compatibility matrix (built and cached per version): the registry etcd
   * (the API server's own etcd keeps the default) and the Kubernetes control plane. Default:
   * $ETCD_REGISTRAR_REGISTRY_ETCD_VERSION / $ETCD_REGISTRAR_KUBERNETES_VERSION, else the pinned ones.
   */
  registryEtcdVersion?: string;
  kubernetesVersion?: string;
  /**
   * Range KWOK takes pod IPs from (default POD_CIDR). A range inside 127.0.0.0/8, e.g.
   * '127.1.0.0/16', makes every pod IP a local address that test processes can listen on
   * (test/discovery/pod-servers.ts).
   */
  podCidr?: string;
}

/** The etcd user the controller logs in as with `registryAuth`. */
export const REGISTRY_USER = 'etcd-registrar';
/** The controller's default --owner-record-prefix. */
export const REGISTRY_OWNER_PREFIX = '/etcd-registrar/owners/';
/** etcd3's election namespace for the controller's campaigns (`election/etcd-registrar/<owner>/`). */
export const REGISTRY_ELECTION_PREFIX = 'election/etcd-registrar/';

/** Credentials of a registry with `registryAuth`. */
export interface RegistryAuth {
  /** REGISTRY_USER, whose role grants readwrite on `prefixes` only. */
  username: string;
  password: string;
  /** DIR/registry/password: the password alone, for --etcd-password-file. */
  passwordFile: string;
  /** The key root, REGISTRY_OWNER_PREFIX and REGISTRY_ELECTION_PREFIX. */
  prefixes: readonly string[];
  /** `root`: full rights, for tests and etcdctl (ETCDCTL_USER/ETCDCTL_PASSWORD in DIR/env). */
  rootUsername: string;
  rootPassword: string;
  /** DIR/registry/root-password. */
  rootPasswordFile: string;
}

/** Files a client of a TLS registry needs (the controller's --etcd-ca/cert/key-file). */
export interface RegistryTlsFiles {
  caFile: string;
  certFile: string;
  keyFile: string;
}

export interface KubectlResult {
  stdout: string;
  stderr: string;
}

export interface KubectlOptions {
  /** Written to kubectl's stdin (for `apply -f -`). */
  input?: string;
  /** Run as someone else than admin. */
  kubeconfig?: string;
}

export interface ServiceAccountKubeconfigOptions {
  /** Token lifetime; default 24 h. */
  durationSeconds?: number;
  /** Where to write it; default DIR/sa-NAMESPACE-NAME.kubeconfig. */
  path?: string;
}

export interface Cluster {
  readonly dir: string;
  /** Admin kubeconfig (client certificate in system:masters). */
  readonly kubeconfigPath: string;
  /** https://127.0.0.1:PORT */
  readonly apiServerUrl: string;
  /** CA that signed the API server's serving certificate. */
  readonly caPath: string;
  /**
   * The registry etcd (separate from the API server's storage); with several members,
   * member 0. Its `endpoints` are that member's only: use `registryEndpoints` for clients.
   */
  readonly registry: EtcdServer;
  /** Every member of the registry etcd (one, or three with `registryMembers: 3`). */
  readonly registryMembers: readonly EtcdServer[];
  /** Client URLs of all registry members (what ETCD_ENDPOINTS in DIR/env lists). */
  readonly registryEndpoints: string[];
  /**
   * The registry member all running members agree leads; waits up to `timeoutMs`
   * (default 15 s) while an election is in progress.
   */
  registryLeader(timeoutMs?: number): Promise<EtcdServer>;
  /**
   * Moves registry leadership to `to` (default: another running member) via etcd's
   * MoveLeader and resolves with the new leader once the members agree.
   */
  moveRegistryLeader(to?: EtcdServer): Promise<EtcdServer>;
  /** Replaces a registry member: removed, data wiped, added back and started empty (same ports). */
  replaceRegistryMember(member: EtcdServer): Promise<void>;
  /**
   * With `registryTls`: the registry's CA (key included, to issue more certificates with
   * pki.ts issueClientCert), serving and client certificates. Undefined otherwise.
   */
  readonly registryPki: RegistryPki | undefined;
  /** With `registryTls`: CA and client certificate files for clients. */
  readonly registryTlsFiles: RegistryTlsFiles | undefined;
  /** With `registryAuth`: the users and their passwords. Undefined otherwise. */
  readonly registryAuth: RegistryAuth | undefined;
  /**
   * A client of the registry with full rights (client certificate, root user with
   * `registryAuth`), over all members. Shared; stop() closes it, callers must not.
   */
  registryAdmin(): Etcd3;
  /**
   * etcd-registrar flags for the registry's TLS files and the etcd-registrar user, when
   * those options are on (empty otherwise). Endpoints are not included: pass
   * `--etcd-endpoints registryEndpoints` (test/e2e's startController does).
   */
  registryControllerArgs(): string[];
  /** The API server's own etcd. */
  readonly apiEtcd: EtcdServer;
  readonly nodeNames: readonly string[];
  /** Names and pids of the running processes (etcds included). */
  processes(): { name: string; pid: number }[];
  /** Runs kubectl as admin (or with opts.kubeconfig); rejects with stderr on failure. */
  kubectl(args: readonly string[], opts?: KubectlOptions): Promise<KubectlResult>;
  /** A kubeconfig authenticating as the ServiceAccount via a TokenRequest token. */
  serviceAccountKubeconfig(
    namespace: string,
    serviceAccount: string,
    opts?: ServiceAccountKubeconfigOptions,
  ): Promise<string>;
  /** Creates a namespace and waits until its default ServiceAccount exists (pods need it). */
  createNamespace(name: string): Promise<void>;
  /** Stops kube-apiserver and starts it again on the same port; resolves when ready. */
  restartApiServer(): Promise<void>;
  /** Kills every process started and removes the directory. Idempotent. */
  stop(): Promise<void>;
}

const CONTROL_PLANE_TOOLS: ToolName[] = [
  'kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubectl', 'etcd', 'kwok',
];
const KUBERNETES_TOOLS: ToolName[] = ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubectl'];

export async function startCluster(options: ClusterOptions = {}): Promise<Cluster> {
  const fromEnv = versionOverridesFromEnv();
  const opts: ClusterOptions = {
    ...options,
    registryEtcdVersion: options.registryEtcdVersion ?? fromEnv.etcd ?? ETCD_VERSION,
    kubernetesVersion: options.kubernetesVersion ?? fromEnv.kubernetes ?? KUBERNETES_VERSION,
  };
  await ensureTools(CONTROL_PLANE_TOOLS);
  await ensureTools(['etcd', 'etcdctl', ...KUBERNETES_TOOLS], { etcd: opts.registryEtcdVersion, kubernetes: opts.kubernetesVersion });
  const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'etcd-registrar-cluster-')));
  await mkdir(dir, { recursive: true });
  ownDir(dir);
  const cluster = new LocalCluster(dir, opts);
  try {
    await cluster.start();
    return cluster;
  } catch (err) {
    await cluster.stop();
    throw err;
  }
}

class LocalCluster implements Cluster {
  readonly dir: string;
  readonly kubeconfigPath: string;
  readonly nodeNames: string[];
  #apiServerUrl = '';
  #apiPort = 0;
  #pki: ClusterPki | undefined;
  #registry: EtcdServer[] = [];
  #registryPki: RegistryPki | undefined;
  #registryAdmin: Etcd3 | undefined;
  #registryAuth: RegistryAuth | undefined;
  #apiEtcd: EtcdServer | undefined;
  #apiServer: ManagedProcess | undefined;
  #others: ManagedProcess[] = [];
  #stopped = false;
  readonly #opts: ClusterOptions;
  readonly #timeoutMs: number;

  constructor(dir: string, opts: ClusterOptions) {
    this.dir = dir;
    this.#opts = opts;
    this.#timeoutMs = opts.startTimeoutMs ?? 30_000;
    this.kubeconfigPath = join(dir, 'admin.kubeconfig');
    this.nodeNames = Array.from({ length: opts.nodes ?? 3 }, (_, i) => `kwok-node-${i}`);
  }

  get apiServerUrl(): string {
    return this.#apiServerUrl;
  }

  get caPath(): string {
    return this.#requirePki().ca.cert;
  }

  get registry(): EtcdServer {
    const first = this.#registry[0];
    if (first === undefined) throw new Error('cluster not started');
    return first;
  }

  get registryMembers(): readonly EtcdServer[] {
    return this.#registry;
  }

  get registryEndpoints(): string[] {
    return this.#registry.flatMap((m) => m.endpoints);
  }

  registryLeader(timeoutMs?: number): Promise<EtcdServer> {
    return etcdLeader(this.#registry, (endpoint, once) => this.#registryClient([endpoint], once), timeoutMs);
  }

  moveRegistryLeader(to?: EtcdServer): Promise<EtcdServer> {
    return moveEtcdLeader(this.#registry, (endpoint, once) => this.#registryClient([endpoint], once), to);
  }

  replaceRegistryMember(member: EtcdServer): Promise<void> {
    return replaceEtcdMember(this.#registry, member, (endpoint, once) => this.#registryClient([endpoint], once));
  }

  get registryPki(): RegistryPki | undefined {
    return this.#registryPki;
  }

  get registryTlsFiles(): RegistryTlsFiles | undefined {
    const pki = this.#registryPki;
    return pki === undefined ? undefined : { caFile: pki.ca.cert, certFile: pki.client.cert, keyFile: pki.client.key };
  }

  get registryAuth(): RegistryAuth | undefined {
    return this.#registryAuth;
  }

  registryAdmin(): Etcd3 {
    if (this.#stopped) throw new Error('cluster stopped');
    this.#registryAdmin ??= this.#registryClient(this.registryEndpoints);
    return this.#registryAdmin;
  }

  registryControllerArgs(): string[] {
    const args: string[] = [];
    const tls = this.registryTlsFiles;
    if (tls !== undefined) {
      args.push('--etcd-ca-file', tls.caFile, '--etcd-cert-file', tls.certFile, '--etcd-key-file', tls.keyFile);
    }
    const auth = this.#registryAuth;
    if (auth !== undefined) args.push('--etcd-username', auth.username, '--etcd-password-file', auth.passwordFile);
    return args;
  }

  /** A client with full rights on the registry (root once auth is on); the caller closes it. */
  /** `once`: no etcd3 retries or circuit breaker (see ConnectFn). */
  #registryClient(hosts: string[], once = false): Etcd3 {
    const pki = this.#registryPki;
    const auth = this.#registryAuth;
    return new Etcd3({
      hosts,
      ...(auth === undefined ? {} : { auth: { username: auth.rootUsername, password: auth.rootPassword } }),
      ...(pki === undefined
        ? {}
        : {
            credentials: {
              rootCertificate: readFileSync(pki.ca.cert),
              certChain: readFileSync(pki.client.cert),
              privateKey: readFileSync(pki.client.key),
            },
          }),
      // A dead member must not hang a helper; streams (watches) are the caller's.
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + 5_000 }),
      ...(once ? { faultHandling: { host: () => noopPolicy(), global: noopPolicy() } } : {}),
    });
  }

  get apiEtcd(): EtcdServer {
    if (this.#apiEtcd === undefined) throw new Error('cluster not started');
    return this.#apiEtcd;
  }

  #requirePki(): ClusterPki {
    if (this.#pki === undefined) throw new Error('cluster not started');
    return this.#pki;
  }

  #log(line: string): void {
    this.#opts.log?.(line);
  }

  async start(): Promise<void> {
    const started = Date.now();
    const pkiDir = join(this.dir, 'pki');
    await mkdir(pkiDir, { recursive: true });
    const [pki, apiEtcd, registry, apiPort] = await settleAll([
      makeClusterPki(pkiDir),
      // The API server's own etcd stays at the pinned version whatever the registry runs.
      startEtcd({ dir: join(this.dir, 'etcd-api'), name: 'api', version: ETCD_VERSION }).then((e) => (this.#apiEtcd = e)),
      this.#startRegistry(),
      freePort(),
    ] as const);
    this.#pki = pki;
    this.#apiPort = apiPort;
    this.#apiServerUrl = `https://127.0.0.1:${apiPort}`;
    this.#log(`etcds healthy (${apiEtcd.endpoints[0]}, registry ${registry.flatMap((m) => m.endpoints).join(',')})`);

    await this.#writeKubeconfigs(pki);
    await this.#startApiServer();
    this.#log(`kube-apiserver ready at ${this.#apiServerUrl} (${Date.now() - started} ms)`);

    const kwok = this.#startKwok();
    await settleAll([this.#startControllerManager(pki), this.#startScheduler(), this.#createNodes()]);
    await this.#waitSettled(kwok);
    await this.#warmPodIpPool(kwok);
    this.#log(`cluster ready in ${Date.now() - started} ms (${this.dir})`);
  }

  async #startRegistry(): Promise<EtcdServer[]> {
    const members = this.#opts.registryMembers ?? 1;
    let tls: EtcdTls | undefined;
    if (this.#opts.registryTls === true) {
      const pki = await makeRegistryPki(join(this.dir, 'registry'));
      this.#registryPki = pki;
      tls = { certFile: pki.server.cert, keyFile: pki.server.key, trustedCaFile: pki.ca.cert };
    }
    const member = { version: this.#opts.registryEtcdVersion, ...(tls === undefined ? {} : { tls }) };
    if (members === 1) {
      this.#registry = [await startEtcd({ ...member, dir: join(this.dir, 'etcd-registry'), name: 'registry' })];
    } else {
      const names = Array.from({ length: members }, (_, i) => `registry-${i}`);
      this.#registry = await startEtcdCluster({ dir: join(this.dir, 'etcd-registry'), names, member });
    }
    if (this.#opts.registryAuth === true) await this.#enableRegistryAuth();
    return this.#registry;
  }

  /** Creates root and the etcd-registrar user with its role, then turns auth on. */
  async #enableRegistryAuth(): Promise<void> {
    const dir = join(this.dir, 'registry');
    await mkdir(dir, { recursive: true });
    const keyRoot = this.#opts.registryKeyRoot ?? '/';
    const auth: RegistryAuth = {
      username: REGISTRY_USER,
      password: randomBytes(18).toString('base64url'),
      passwordFile: join(dir, 'password'),
      prefixes: [keyRoot, REGISTRY_OWNER_PREFIX, REGISTRY_ELECTION_PREFIX],
      rootUsername: 'root',
      rootPassword: randomBytes(18).toString('base64url'),
      rootPasswordFile: join(dir, 'root-password'),
    };
    await writeFile(auth.passwordFile, `${auth.password}\n`, { mode: 0o600 });
    await writeFile(auth.rootPasswordFile, `${auth.rootPassword}\n`, { mode: 0o600 });
    const admin = this.#registryClient(this.registryEndpoints);
    try {
      await admin.role('root').create();
      await admin.user(auth.rootUsername).create(auth.rootPassword);
      await admin.user(auth.rootUsername).addRole('root');
      const role = admin.role(REGISTRY_USER);
      await role.create();
      for (const prefix of new Set(auth.prefixes)) {
        await role.grant({ permission: 'Readwrite', range: admin.range({ prefix }) });
      }
      await admin.user(auth.username).create(auth.password);
      await admin.user(auth.username).addRole(REGISTRY_USER);
      await admin.auth.authEnable();
    } finally {
      admin.close();
    }
    this.#registryAuth = auth;
  }

  async #writeKubeconfigs(pki: ClusterPki): Promise<void> {
    const kc = (file: string, user: string, clientCert: KeyPair): Promise<string> =>
      writeKubeconfig(join(this.dir, file), this.#apiServerUrl, pki.ca.cert, user, { clientCert });
    await Promise.all([
      kc('admin.kubeconfig', 'admin', pki.admin),
      kc('controller-manager.kubeconfig', 'system:kube-controller-manager', pki.controllerManager),
      kc('scheduler.kubeconfig', 'system:kube-scheduler', pki.scheduler),
    ]);
  }

  #spawn(name: string, tool: ToolName, args: string[]): ManagedProcess {
    return spawnManaged({ name, command: this.#toolPath(tool), args, logPath: join(this.dir, `${name}.log`) });
  }

  /** The control plane and kubectl at the cluster's Kubernetes version. */
  #toolPath(tool: ToolName): string {
    return toolPath(tool, toolVersion(tool, { kubernetes: this.#opts.kubernetesVersion }));
  }

  async #startApiServer(): Promise<void> {
    const pki = this.#requirePki();
    const apiServer = this.#spawn('kube-apiserver', 'kube-apiserver', [
      `--etcd-servers=${this.apiEtcd.endpoints.join(',')}`,
      '--bind-address=127.0.0.1',
      `--secure-port=${this.#apiPort}`,
      '--advertise-address=127.0.0.1',
      // Loopback addresses are not valid endpoints, so the `kubernetes` Service gets none.
      '--endpoint-reconciler-type=none',
      `--cert-dir=${join(this.dir, 'pki')}`,
      `--tls-cert-file=${pki.apiServer.cert}`,
      `--tls-private-key-file=${pki.apiServer.key}`,
      `--client-ca-file=${pki.ca.cert}`,
      `--service-cluster-ip-range=${SERVICE_CIDR}`,
      '--allow-privileged=true',
      '--authorization-mode=Node,RBAC',
      `--service-account-issuer=${this.#apiServerUrl}`,
      `--service-account-key-file=${pki.serviceAccountPub}`,
      `--service-account-signing-key-file=${pki.serviceAccountKey}`,
      // Without it a SIGTERM waits ~10 s for the watches of kcm/scheduler/kwok to end.
      '--shutdown-watch-termination-grace-period=1s',
      '--profiling=false',
    ]);
    this.#apiServer = apiServer;
    await waitFor('/readyz', async () => (await this.#apiGet('/readyz')).status === 200, {
      timeoutMs: this.#timeoutMs,
      intervalMs: 200,
      process: apiServer,
    });
  }

  async #startControllerManager(pki: ClusterPki): Promise<void> {
    const kubeconfig = join(this.dir, 'controller-manager.kubeconfig');
    const port = await freePort();
    const proc = this.#spawn('kube-controller-manager', 'kube-controller-manager', [
      `--kubeconfig=${kubeconfig}`,
      // No delegated authn/authz kubeconfigs: only the always-allowed health paths are used.
      '--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics',
      '--bind-address=127.0.0.1',
      `--secure-port=${port}`,
      `--cert-dir=${join(this.dir, 'kcm-certs')}`,
      '--leader-elect=false',
      '--use-service-account-credentials=true',
      // The default client rate limit (20 qps) throttles its startup by seconds.
      '--kube-api-qps=500',
      '--kube-api-burst=1000',
      `--root-ca-file=${pki.ca.cert}`,
      `--service-account-private-key-file=${pki.serviceAccountKey}`,
      `--cluster-cidr=${this.#opts.podCidr ?? POD_CIDR}`,
      `--service-cluster-ip-range=${SERVICE_CIDR}`,
      // KWOK hands out pod IPs itself; node IPAM is not needed.
      '--allocate-node-cidrs=false',
      '--profiling=false',
    ]);
    this.#others.push(proc);
    await waitHealthz(proc, port, this.#timeoutMs);
  }

  async #startScheduler(): Promise<void> {
    const kubeconfig = join(this.dir, 'scheduler.kubeconfig');
    const port = await freePort();
    const proc = this.#spawn('kube-scheduler', 'kube-scheduler', [
      `--kubeconfig=${kubeconfig}`,
      '--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics',
      '--bind-address=127.0.0.1',
      `--secure-port=${port}`,
      `--cert-dir=${join(this.dir, 'scheduler-certs')}`,
      '--leader-elect=false',
      '--profiling=false',
    ]);
    this.#others.push(proc);
    await waitHealthz(proc, port, this.#timeoutMs);
  }

  #startKwok(): ManagedProcess {
    const proc = this.#spawn('kwok', 'kwok', [
      `--kubeconfig=${this.kubeconfigPath}`,
      `--config=${KWOK_STAGES}`,
      '--manage-all-nodes=true',
      `--cidr=${this.#opts.podCidr ?? POD_CIDR}`,
      '--node-ip=10.243.0.1',
    ]);
    this.#others.push(proc);
    return proc;
  }

  async #createNodes(): Promise<void> {
    const zones = ['zone-a', 'zone-b', 'zone-c'];
    const nodes = this.nodeNames.map((name, i) => ({
      apiVersion: 'v1',
      kind: 'Node',
      metadata: {
        name,
        annotations: { 'kwok.x-k8s.io/node': 'fake', 'node.alpha.kubernetes.io/ttl': '0' },
        labels: {
          'kubernetes.io/hostname': name,
          'kubernetes.io/os': 'linux',
          'kubernetes.io/arch': 'amd64',
          'node-role.kubernetes.io/worker': '',
          'topology.kubernetes.io/region': 'local',
          'topology.kubernetes.io/zone': zones[i % zones.length] ?? 'zone-a',
          type: 'kwok',
        },
      },
      spec: {},
      status: {
        addresses: [
          { type: 'InternalIP', address: `10.243.0.${i + 10}` },
          { type: 'Hostname', address: name },
        ],
      },
    }));
    await this.kubectl(['apply', '-f', '-'], {
      input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: nodes }),
    });
  }

  /** Nodes Ready (KWOK works) and the default ServiceAccount exists (controllers work). */
  async #waitSettled(kwok: ManagedProcess): Promise<void> {
    await waitFor(
      'fake nodes to become Ready',
      async () => {
        const { stdout } = await this.kubectl([
          'get', 'nodes', '-o',
          'jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}',
        ]);
        const statuses = stdout.split('\n').filter((s) => s !== '');
        return statuses.length === this.nodeNames.length && statuses.every((s) => s === 'True');
      },
      { timeoutMs: this.#timeoutMs, intervalMs: 200, process: kwok },
    );
    await this.#waitDefaultServiceAccount('default');
  }

  /**
   * KWOK makes a pod CIDR's IP pool on first use with a Load and a Store that are not one
   * atomic step: pods that get their IPs at once on a fresh KWOK can draw from two pools and
   * share an address (the likely cause of a CI failure: a new Deployment's five Ready pods
   * matched by four keys). One pod given an IP and deleted before any test runs makes the
   * pool, so later pods draw from it alone.
   */
  async #warmPodIpPool(kwok: ManagedProcess): Promise<void> {
    const nodeName = this.nodeNames[0];
    if (nodeName === undefined) return;
    const name = 'kwok-ip-pool-warmup';
    const pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace: 'default' },
      spec: { nodeName, containers: [{ name: 'warmup', image: 'warmup' }] },
    };
    await this.kubectl(['apply', '-f', '-'], { input: JSON.stringify(pod) });
    await waitFor(
      'the warm-up pod to get an IP from KWOK',
      async () => (await this.kubectl(['get', 'pod', name, '-n', 'default', '-o', 'jsonpath={.status.podIP}'])).stdout.trim() !== '',
      { timeoutMs: this.#timeoutMs, intervalMs: 100, process: kwok },
    );
    await this.kubectl(['delete', 'pod', name, '-n', 'default', '--grace-period=0', '--force', '--wait=true']);
  }

  async #waitDefaultServiceAccount(namespace: string): Promise<void> {
    await waitFor(
      `ServiceAccount ${namespace}/default`,
      async () => {
        await this.kubectl(['get', 'serviceaccount', 'default', '-n', namespace, '-o', 'name']);
        return true;
      },
      { timeoutMs: this.#timeoutMs, intervalMs: 100 },
    );
  }

  processes(): { name: string; pid: number }[] {
    const procs: { name: string; pid: number }[] = [];
    for (const etcd of [this.#apiEtcd, ...this.#registry]) {
      if (etcd?.isRunning() === true) procs.push({ name: `etcd-${etcd.name}`, pid: etcd.pid });
    }
    for (const p of [this.#apiServer, ...this.#others]) {
      if (p?.isRunning() === true) procs.push({ name: p.name, pid: p.pid });
    }
    return procs;
  }

  kubectl(args: readonly string[], opts: KubectlOptions = {}): Promise<KubectlResult> {
    const fullArgs = [
      `--kubeconfig=${opts.kubeconfig ?? this.kubeconfigPath}`,
      `--cache-dir=${join(this.dir, 'kube-cache')}`,
      ...args,
    ];
    return new Promise((resolve, reject) => {
      const child = execFile(
        this.#toolPath('kubectl'),
        fullArgs,
        { maxBuffer: 64 * 1024 * 1024 },
        (err, stdout, stderr) => {
          if (err !== null) {
            reject(new Error(`kubectl ${args.join(' ')} failed: ${stderr.trim() || err.message}`));
          } else {
            resolve({ stdout, stderr });
          }
        },
      );
      // kubectl may exit before reading stdin; the exit status reports that, not an EPIPE crash.
      child.stdin?.on('error', () => undefined);
      child.stdin?.end(opts.input ?? '');
    });
  }

  async serviceAccountKubeconfig(
    namespace: string,
    serviceAccount: string,
    opts: ServiceAccountKubeconfigOptions = {},
  ): Promise<string> {
    const duration = opts.durationSeconds ?? 24 * 3600;
    const { stdout } = await this.kubectl([
      'create', 'token', serviceAccount, '-n', namespace, `--duration=${duration}s`,
    ]);
    const path = opts.path ?? join(this.dir, `sa-${namespace}-${serviceAccount}.kubeconfig`);
    const user = `system:serviceaccount:${namespace}:${serviceAccount}`;
    return writeKubeconfig(path, this.#apiServerUrl, this.caPath, user, { token: stdout.trim() });
  }

  async createNamespace(name: string): Promise<void> {
    await this.kubectl(['create', 'namespace', name]);
    await this.#waitDefaultServiceAccount(name);
  }

  async restartApiServer(): Promise<void> {
    await this.#apiServer?.stop();
    await this.#startApiServer();
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    // Clients first, so nothing logs storms of connection errors while the rest stops.
    await Promise.all(this.#others.map((p) => p.stop(3000)));
    await this.#apiServer?.stop(5000);
    this.#registryAdmin?.close();
    await Promise.all([this.#apiEtcd?.stop(), ...this.#registry.map((m) => m.stop())]);
    await rm(this.dir, { recursive: true, force: true, maxRetries: 3 });
    releaseDir(this.dir);
  }

  #apiGet(path: string): Promise<{ status: number; body: string }> {
    const pki = this.#requirePki();
    return httpsGet(`${this.#apiServerUrl}${path}`, {
      ca: readFileSync(pki.ca.cert),
      cert: readFileSync(pki.admin.cert),
      key: readFileSync(pki.admin.key),
    });
  }
}

async function waitHealthz(proc: ManagedProcess, port: number, timeoutMs: number): Promise<void> {
  const url = `https://127.0.0.1:${port}/healthz`;
  // Self-signed serving certificate generated by the component itself.
  await waitFor(`${url} to be ok`, async () => (await httpsGet(url, { rejectUnauthorized: false })).status === 200, {
    timeoutMs,
    intervalMs: 200,
    process: proc,
  });
}

/**
 * Promise.all that waits for every promise before rejecting, so stop() after a failed
 * start also sees the processes whose start was still in flight.
 */
async function settleAll<T extends readonly unknown[]>(
  promises: { [K in keyof T]: Promise<T[K]> },
): Promise<T> {
  const results = await Promise.allSettled(promises);
  const failed = results.find((r) => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
  return results.map((r) => (r as PromiseFulfilledResult<unknown>).value) as unknown as T;
}

export interface HttpsGetOptions {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  rejectUnauthorized?: boolean;
  headers?: Record<string, string>;
}

/** A GET over TLS with explicit trust and credentials (fetch cannot take a private CA). */
export function httpsGet(url: string, opts: HttpsGetOptions): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ...opts, method: 'GET', timeout: 3000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

/** The TLS files under the names of the issue, etcd-registrar's and etcdctl's. */
function registryTlsVars(tls: RegistryTlsFiles | undefined): Record<string, string> {
  if (tls === undefined) return {};
  return {
    ETCD_CA_FILE: tls.caFile,
    ETCD_CERT_FILE: tls.certFile,
    ETCD_KEY_FILE: tls.keyFile,
    ETCD_REGISTRAR_ETCD_CA_FILE: tls.caFile,
    ETCD_REGISTRAR_ETCD_CERT_FILE: tls.certFile,
    ETCD_REGISTRAR_ETCD_KEY_FILE: tls.keyFile,
    ETCDCTL_CACERT: tls.caFile,
    ETCDCTL_CERT: tls.certFile,
    ETCDCTL_KEY: tls.keyFile,
  };
}

/**
 * The controller's user and password file; etcdctl gets root (the env file is for people
 * inspecting a loopback test cluster, and etcdctl cannot read a password file).
 */
function registryAuthVars(auth: RegistryAuth | undefined): Record<string, string> {
  if (auth === undefined) return {};
  return {
    ETCD_USERNAME: auth.username,
    ETCD_PASSWORD_FILE: auth.passwordFile,
    ETCD_REGISTRAR_ETCD_USERNAME: auth.username,
    ETCD_REGISTRAR_ETCD_PASSWORD_FILE: auth.passwordFile,
    ETCDCTL_USER: auth.rootUsername,
    ETCDCTL_PASSWORD: auth.rootPassword,
  };
}

/** DIR/env: a shell-sourceable description of a running cluster. */
export function envFileText(cluster: Cluster): string {
  const vars: Record<string, string> = {
    CLUSTER_DIR: cluster.dir,
    KUBECONFIG: cluster.kubeconfigPath,
    // kubectl's discovery cache, per cluster rather than shared in ~/.kube/cache.
    KUBECACHEDIR: join(cluster.dir, 'kube-cache'),
    KUBE_APISERVER_URL: cluster.apiServerUrl,
    KUBE_CA_FILE: cluster.caPath,
    ETCD_ENDPOINTS: cluster.registryEndpoints.join(','),
    // What `etcd-registrar run` reads when this file is sourced (src/config.ts).
    ETCD_REGISTRAR_ETCD_ENDPOINTS: cluster.registryEndpoints.join(','),
    // etcdctl reads its flags from ETCDCTL_* variables: point it at the registry etcd.
    ETCDCTL_ENDPOINTS: cluster.registryEndpoints.join(','),
    ...registryTlsVars(cluster.registryTlsFiles),
    ...registryAuthVars(cluster.registryAuth),
    API_ETCD_ENDPOINTS: cluster.apiEtcd.endpoints.join(','),
    KUBECTL: toolPath('kubectl'),
    ETCDCTL: toolPath('etcdctl'),
    HELM: toolPath('helm'),
    KWOK: toolPath('kwok'),
    POD_CIDR,
    SERVICE_CIDR,
  };
  const lines = Object.entries(vars).map(([k, v]) => `export ${k}=${shellQuote(v)}`);
  return `# etcd-registrar local cluster; source this file\n${lines.join('\n')}\n`;
}
