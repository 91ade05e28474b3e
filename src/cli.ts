// The one place where the pieces are wired together: flags -> config -> Kubernetes client,
// registry, pod source, desired state, controller, health server, signals.
import { hostname } from 'node:os';
import { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { ConfigError, mappingConfigOf, parseConfig, parseListenAddress, type Config } from './config.ts';
import { retryUntilDone } from './backoff.ts';
import { Controller, type ReconcileReport } from './controller/controller.ts';
import type { EventSink, LeadershipPort } from './controller/ports.ts';
import { DesiredState } from './desired/index.ts';
import { EventRecorder } from './events/recorder.ts';
import { mappingNeedsZones, type MappingConfig } from './mapping/index.ts';
import { AuditLog, createLogger, stderrDestination, stdoutDestination } from './observability/log.ts';
import { HealthServer } from './observability/http.ts';
import { Metrics } from './observability/metrics.ts';
import { EtcdRegistry, type Leadership, type RegistryOptions } from './registry/index.ts';
import { SharedConnectionKubeConfig } from './source/kube-config.ts';
import { PodSource } from './source/pod-source.ts';
import { NamespaceSource } from './source/namespace-source.ts';
import { NodeSource } from './source/node-source.ts';
import { admissionOf, GRANTS_ANNOTATION, formatStaticGrants, verdictFor } from './grants/grants.ts';
import { ServiceGrants } from './grants/service-grants.ts';
import { podKeyOf, type Change, type PodRef } from './types.ts';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

export interface Io {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
}

const processIo: Io = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
};

/** Runs one command; resolves to the process exit code. */
export async function main(argv: readonly string[], env: Readonly<Record<string, string | undefined>>, io: Io = processIo): Promise<number> {
  let config: Config;
  let kubeConfig: KubeConfig;
  let mapping: MappingConfig;
  try {
    const parsed = parseConfig(argv, env);
    if (parsed.kind === 'help') {
      io.stdout(`${parsed.text}\n`);
      return EXIT_OK;
    }
    config = parsed.config;
    mapping = mappingConfigOf(config);
    kubeConfig = loadKubeConfig(config.kubeconfig);
  } catch (error) {
    if (error instanceof ConfigError) {
      io.stderr(`etcd-registrar: ${error.message}\n`);
      return EXIT_USAGE;
    }
    throw error;
  }
  // `run` logs to stdout; one-off commands keep stdout for their report and log to stderr.
  const logDestination = config.command === 'run' ? stdoutDestination() : stderrDestination();
  const logger = createLogger(config.logLevel, logDestination);
  try {
    switch (config.command) {
      case 'run':
        return await run(config, kubeConfig, mapping, logger);
      case 'reconcile':
        return await reconcileOnce(config, kubeConfig, mapping, logger, io);
      case 'list':
        return await list(config, kubeConfig, mapping, logger, io);
    }
  } catch (error) {
    logger.fatal({ err: error }, 'etcd-registrar failed');
    return EXIT_FAILURE;
  }
}

function loadKubeConfig(path: string | undefined): KubeConfig {
  // One connection pool for every API call (client-node would open a TLS connection per call).
  const kubeConfig: KubeConfig = new SharedConnectionKubeConfig();
  try {
    if (path === undefined) kubeConfig.loadFromDefault();
    else kubeConfig.loadFromFile(path);
  } catch (error) {
    throw new ConfigError(`--kubeconfig: cannot load ${path ?? 'the default kubeconfig'}: ${error instanceof Error ? error.message : String(error)}`);
  }
  if (kubeConfig.getCurrentCluster() === null) {
    throw new ConfigError('--kubeconfig: no cluster configured (not in a pod, no $KUBECONFIG, no ~/.kube/config)');
  }
  return kubeConfig;
}

function registryOptionsOf(config: Config, logger: Logger): RegistryOptions {
  return {
    endpoints: [...config.etcdEndpoints],
    ownerId: config.ownerId,
    keyRoot: config.keyRoot,
    ownerRecordPrefix: config.ownerRecordPrefix,
    leaseTtlSeconds: config.leaseTtlSeconds,
    callTimeoutMs: config.etcdCallTimeoutMs,
    credentialRefreshMs: config.etcdCredentialRefreshMs,
    maxOpsPerTxn: 100,
    tls: config.etcdCaFile === undefined && config.etcdCertFile === undefined
      ? undefined
      : { caFile: config.etcdCaFile, certFile: config.etcdCertFile, keyFile: config.etcdKeyFile, serverName: config.etcdServerName },
    auth: config.etcdUsername === undefined || config.etcdPasswordFile === undefined
      ? undefined
      : { username: config.etcdUsername, passwordFile: config.etcdPasswordFile },
    logger: logger.child({ module: 'registry' }),
  };
}

interface Assembly {
  readonly controller: Controller;
  readonly source: PodSource;
  readonly metrics: Metrics;
  readonly audit: AuditLog;
}

function assemble(config: Config, kubeConfig: KubeConfig, mapping: MappingConfig, registry: EtcdRegistry, logger: Logger, events: EventSink & Partial<Pick<EventRecorder, 'stats'>>, leadership?: LeadershipPort): Assembly {
  const auditDestination = config.command === 'run' ? stdoutDestination() : stderrDestination();
  const source = podSourceOf(config, kubeConfig, logger);
  const nodes = nodeSourceOf(config, kubeConfig, mapping, logger);
  const desired = desiredStateOf(mapping, nodes);
  const audit = new AuditLog(config.ownerId, auditDestination);
  const grants = serviceGrantsOf(config, kubeConfig, logger);
  let controller: Controller | undefined;
  const metrics = new Metrics({
    queueDepth: () => controller?.queueDepth ?? 0,
    lastKeepaliveAt: () => registry.lastKeepaliveAt(),
    ownedKeys: () => controller?.ownedKeyCount() ?? 0,
    watchedPods: () => source.size,
    sourceRestarts: () => source.stats().restarts,
    outOfSpace: () => registry.outOfSpace() !== undefined,
    ...(events.stats === undefined ? {} : { events: events.stats.bind(events) }),
  });
  controller = new Controller(
    { source, registry, desired, events, audit, metrics, logger: logger.child({ module: 'controller' }), leadership, grants, nodes },
    {
      policy: config.policy,
      dryRun: config.dryRun,
      reconcileIntervalMs: config.reconcileIntervalMs,
      fullReadIntervalMs: config.fullReadIntervalMs,
      maxDeleteShare: config.maxDeleteShare,
      forceDeletes: config.forceDeletes,
      maxBatchKeys: config.maxBatchKeys,
      maxInflightBatches: config.maxInflightBatches,
    },
  );
  return { controller, source, metrics, audit };
}

function podSourceOf(config: Config, kubeConfig: KubeConfig, logger: Logger): PodSource {
  return new PodSource({
    kubeConfig,
    contentType: config.kubeContentType,
    namespaces: config.namespaces,
    ...(config.labelSelector === undefined ? {} : { labelSelector: config.labelSelector }),
    logger: logger.child({ module: 'source' }),
  });
}

/** The desired state, with zones from the node cache when the mapping uses them. */
function desiredStateOf(mapping: MappingConfig, nodes: NodeSource | undefined): DesiredState {
  return new DesiredState(mapping, { zoneOf: nodes === undefined ? undefined : (node) => nodes.zone(node) });
}

/** Nodes are watched (name -> zone label) only when the mapping uses zones (docs/decisions/0008). */
function nodeSourceOf(config: Config, kubeConfig: KubeConfig, mapping: MappingConfig, logger: Logger): NodeSource | undefined {
  if (!mappingNeedsZones(mapping)) return undefined;
  return new NodeSource({ kubeConfig, contentType: config.kubeContentType, logger: logger.child({ module: 'nodes' }) });
}

/** Service grants (docs/decisions/0009): the Namespace annotation follows --annotation-prefix. */
function serviceGrantsOf(config: Config, kubeConfig: KubeConfig, logger: Logger): ServiceGrants {
  const annotation = `${config.annotationPrefix}${GRANTS_ANNOTATION}`;
  const log = logger.child({ module: 'grants' });
  const namespaces = config.serviceGrants === 'off' ? undefined : new NamespaceSource({ kubeConfig, contentType: config.kubeContentType, annotation, logger: log });
  log.info({ mode: config.serviceGrants, annotation, static: formatStaticGrants(config.staticGrants) }, 'service grants');
  return new ServiceGrants({ mode: config.serviceGrants, annotation, staticGrants: config.staticGrants, namespaces, logger: log });
}

async function run(config: Config, kubeConfig: KubeConfig, mapping: MappingConfig, logger: Logger): Promise<number> {
  logger.info({ owner: config.ownerId, endpoints: config.etcdEndpoints, environment: config.environment, namespaces: config.namespaces, kubeContentType: config.kubeContentType, dryRun: config.dryRun }, 'starting');
  const registry = new EtcdRegistry(registryOptionsOf(config, logger));
  const shutdown = new AbortController();
  const identity = env('POD_NAME') ?? `${hostname()}-${process.pid}`;
  let busy = (): boolean => false;
  let deregistering = (): boolean => false;
  // Events wait (up to a second at a time) while registrations are being written, and as long as
  // deregistrations are.
  const recorder = new EventRecorder({ kubeConfig, logger: logger.child({ module: 'events' }), reportingInstance: identity, yieldTo: () => busy(), holdWhile: () => deregistering() });
  // The election needs a started registry; the controller asks for it only after that. Each
  // campaign is a new term; a lost term is reported to the controller, which steps down to
  // standby and campaigns again (docs/decisions/0042).
  let leadership: Leadership | undefined;
  const lostListeners: ((reason: string) => void)[] = [];
  const leadershipPort: LeadershipPort | undefined = config.leaderElection
    ? {
        campaign: () =>
          retryUntilDone(async () => {
            // A previous term (lost, or a campaign that failed) is given up first: its key
            // would otherwise stand ahead of the new campaign until its lease expires. At most
            // 1 s: a revoke stuck on a dead connection must not hold the new campaign back.
            await Promise.race([leadership?.resign(), new Promise((resolve) => setTimeout(resolve, 1_000).unref())]);
            const term = registry.leadership(identity, config.electionTtlSeconds);
            leadership = term;
            term.on('lost', (reason) => {
              if (leadership === term) for (const listener of lostListeners) listener(reason);
            });
            return term.campaign();
            // Capped at 1 s: after a partition heals, the next attempt comes within a second.
          }, { logger, what: 'campaigning for leadership', baseMs: 500, maxMs: 1_000, signal: shutdown.signal }),
        fence: () => leadership?.fence(),
        onLost: (listener) => lostListeners.push(listener),
      }
    : undefined;
  const { controller, metrics } = assemble(config, kubeConfig, mapping, registry, logger, recorder, leadershipPort);
  busy = () => controller.busy();
  deregistering = () => controller.deregistering();
  registry.on('etcdError', ({ op }: { op: string }) => metrics.etcdErrors.inc({ op }));

  let health: HealthServer | undefined;
  if (config.metricsAddress !== '') {
    const { host, port } = parseListenAddress(config.metricsAddress);
    health = new HealthServer({ notReadyReason: () => controller.notReadyReason() }, metrics.registry, { latency: () => controller.recentChangeTimings() });
    const address = await health.listen(host, port);
    logger.info({ address: `${address.address}:${address.port}` }, 'serving /healthz, /readyz and /metrics');
  }

  let requestStop: (reason: string) => void = () => undefined;
  const stopped = new Promise<string>((resolve) => {
    requestStop = (reason) => {
      shutdown.abort(new Error(reason));
      resolve(reason);
    };
    process.once('SIGTERM', () => requestStop('SIGTERM'));
    process.once('SIGINT', () => requestStop('SIGINT'));
  });
  // etcd may be unreachable at start: keep trying (unready) rather than crash-looping.
  const starting = retryUntilDone(() => registry.start(), { logger, what: 'connecting to etcd and taking the data lease', baseMs: 500, signal: shutdown.signal })
    .then(() => controller.start())
    .then(
      (report) => logger.info({ changes: report.plan.changes.length, durationMs: Math.round(report.durationMs) }, 'ready'),
      (error: unknown) => {
        if (!shutdown.signal.aborted) logger.error({ err: error }, 'controller failed to start');
      },
    );
  const signal = await stopped;
  logger.info({ signal }, 'stopping: finishing in-flight writes; the lease and keys stay (the pods are still alive)');
  // Resign first: a standby takes over now instead of after the election TTL.
  await leadership?.resign();
  await controller.stop();
  // A standby still campaigning never finishes starting: do not wait for it.
  await Promise.race([starting, new Promise((resolve) => setTimeout(resolve, 1_000).unref())]);
  await registry.close();
  await recorder.flush(2_000);
  recorder.stop();
  await health?.close();
  logger.info('stopped');
  return EXIT_OK;
}

function env(name: string): string | undefined {
  const value = process.env[name];
  return value === undefined || value === '' ? undefined : value;
}

async function reconcileOnce(config: Config, kubeConfig: KubeConfig, mapping: MappingConfig, logger: Logger, io: Io): Promise<number> {
  const registry = new EtcdRegistry(registryOptionsOf(config, logger));
  // A one-off pass must not create a lease that nobody keeps alive: it adopts the running
  // controller's lease, or (dry-run) plans without one.
  await registry.start({ mode: config.dryRun ? 'read-only' : 'adopt-only' });
  const quietEvents: EventSink = { record: () => undefined };
  const { controller } = assemble(config, kubeConfig, mapping, registry, logger, quietEvents);
  try {
    const report = await controller.runOnce();
    io.stdout(formatReport(report, config));
    return report.outcome === 'error' || controller.failedWrites > 0 ? EXIT_FAILURE : EXIT_OK;
  } finally {
    await registry.close();
  }
}

export function formatReport(report: ReconcileReport, config: Pick<Config, 'output' | 'dryRun'>): string {
  if (config.output === 'json') {
    return `${JSON.stringify({ outcome: report.outcome, dryRun: config.dryRun, changes: report.plan.changes, refused: report.refused, skips: report.plan.skips })}\n`;
  }
  const rows: string[][] = [['ACTION', 'KEY', 'VALUE', 'POD', 'REASON']];
  const row = (action: string, change: Pick<Change, 'key' | 'value' | 'reason' | 'pod'>): string[] => [action, change.key, change.value, change.pod === undefined ? '-' : podKeyOf(change.pod), change.reason];
  for (const change of report.plan.changes) rows.push(row(change.action, change));
  for (const change of report.refused) rows.push(row(`${change.action} (refused)`, change));
  const lines = report.plan.changes.length + report.refused.length === 0 ? ['no changes'] : table(rows);
  const verb = config.dryRun ? 'would apply' : 'applied';
  lines.push(`${report.plan.changes.length} change(s) ${verb}, ${report.refused.length} refused by --max-delete-share, ${report.plan.skips.length} key(s) left alone (owned by others); outcome ${report.outcome}`);
  return `${lines.join('\n')}\n`;
}

async function list(config: Config, kubeConfig: KubeConfig, mapping: MappingConfig, logger: Logger, io: Io): Promise<number> {
  const registry = new EtcdRegistry(registryOptionsOf(config, logger));
  await registry.start({ mode: 'read-only' });
  const source = podSourceOf(config, kubeConfig, logger);
  const nodes = nodeSourceOf(config, kubeConfig, mapping, logger);
  // Grants judge the pods as `run` does, so that a refused claim is not listed as registered.
  const grants = serviceGrantsOf(config, kubeConfig, logger);
  try {
    const desired = desiredStateOf(mapping, nodes);
    source.onChange((event) => {
      if (event.type !== 'upsert') return;
      const namespace = event.pod.namespace;
      desired.upsertPod(event.pod, (service) => admissionOf(verdictFor(grants.mode, grants.status(namespace, service))));
    });
    await grants.start();
    await nodes?.start();
    await source.start();
    const current = await registry.readAll();
    const lease = registry.leaseId();
    const registrations = [...current.values()]
      .filter((entry) => registry.ownsLease(entry.lease))
      .sort((a, b) => a.key.localeCompare(b.key))
      .map((entry) => {
        const wanted = desired.desiredFor(entry.key);
        const claimant = desired.claimant(entry.key);
        const state = wanted === undefined
          ? claimant === undefined ? 'orphan (no pod)' : 'stale (pod not serving)'
          : wanted.value === entry.value ? 'registered' : 'stale value';
        return { key: entry.key, value: entry.value, pod: podKeyOrNull(wanted?.pod ?? claimant), state, leaseId: entry.lease };
      });
    if (config.output === 'json') {
      io.stdout(`${JSON.stringify({ owner: config.ownerId, leaseId: lease, registrations })}\n`);
    } else {
      const rows = [['KEY', 'VALUE', 'POD', 'STATE'], ...registrations.map((r) => [r.key, r.value, r.pod ?? '-', r.state])];
      io.stdout(`${table(rows).join('\n')}\n${registrations.length} registration(s) owned by ${config.ownerId} (lease ${lease === '0' ? 'none' : lease})\n`);
    }
    return EXIT_OK;
  } finally {
    await source.stop();
    await nodes?.stop();
    await grants.stop();
    await registry.close();
  }
}

function podKeyOrNull(pod: PodRef | undefined): string | null {
  return pod === undefined ? null : podKeyOf(pod);
}

function table(rows: readonly string[][]): string[] {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, index) => { widths[index] = Math.max(widths[index] ?? 0, cell.length); });
  return rows.map((row) => row.map((cell, index) => (index === row.length - 1 ? cell : cell.padEnd(widths[index] ?? 0))).join('  '));
}
