// The command line: flags -> config, then one command: `run` (run.ts), `reconcile --once` or
// `list`. The pieces are built in wiring.ts.
import type { Logger } from 'pino';
import { ConfigError, mappingConfigOf, parseConfig, type Config } from './config.ts';
import type { ReconcileReport } from './controller/controller.ts';
import type { EventSink } from './controller/ports.ts';
import type { MappingConfig } from './mapping/index.ts';
import { createLogger, stderrDestination, stdoutDestination } from './observability/log.ts';
import { EtcdRegistry } from './registry/index.ts';
import type { KubeAccess } from './source/kube-access.ts';
import { resolveKubeAccess, type ResolvedKubeAccess } from './source/kube-access-resolve.ts';
import { NoClusterError } from './source/kubeconfig.ts';
import { admissionOf, verdictFor } from './grants/grants.ts';
import { podKeyOf, type Change, type PodRef } from './types.ts';
import { Service } from './run.ts';
import { Assembly, desiredStateOf, nodeSourceOf, podSourceOf, registryOptionsOf, serviceGrantsOf } from './wiring.ts';

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
  let kube: ResolvedKubeAccess;
  let mapping: MappingConfig;
  try {
    const parsed = parseConfig(argv, env);
    if (parsed.kind === 'help') {
      io.stdout(`${parsed.text}\n`);
      return EXIT_OK;
    }
    config = parsed.config;
    mapping = mappingConfigOf(config);
    kube = await loadKubeAccess(config.kubeconfig, env);
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
  logger.info(
    { module: 'kube', path: kube.path, config: kube.origin, server: kube.access.server, ...(kube.reason === undefined ? {} : { reason: kube.reason }) },
    kube.path === 'direct' ? 'API server access: direct' : 'API server access: through @kubernetes/client-node (the direct path does not support this configuration)',
  );
  try {
    switch (config.command) {
      case 'run':
        return await run(config, kube.access, mapping, logger);
      case 'reconcile':
        return await reconcileOnce(config, kube.access, mapping, logger, io);
      case 'list':
        return await list(config, kube.access, mapping, logger, io);
    }
  } catch (error) {
    logger.fatal({ err: error }, 'etcd-registrar failed');
    return EXIT_FAILURE;
  }
}

/**
 * The API server access: the controller's own path for a token, token file, client certificate
 * or in-cluster; @kubernetes/client-node, loaded only then, for anything else (kube-access-resolve.ts).
 */
async function loadKubeAccess(path: string | undefined, env: Readonly<Record<string, string | undefined>>): Promise<ResolvedKubeAccess> {
  try {
    return await resolveKubeAccess({ kubeconfig: path, env });
  } catch (error) {
    if (error instanceof NoClusterError) {
      throw new ConfigError('--kubeconfig: no cluster configured (not in a pod, no $KUBECONFIG, no ~/.kube/config)');
    }
    throw new ConfigError(`--kubeconfig: cannot load ${path ?? 'the default kubeconfig'}: ${error instanceof Error ? error.message : String(error)}`);
  }
}

async function run(config: Config, kube: KubeAccess, mapping: MappingConfig, logger: Logger): Promise<number> {
  logger.info({ owner: config.ownerId, endpoints: config.etcdEndpoints, environment: config.environment, namespaces: config.namespaces, kubeContentType: config.kubeContentType, dryRun: config.dryRun }, 'starting');
  const service = new Service(config, kube, mapping, logger);
  await service.start();
  const signal = await service.stopRequested();
  logger.info({ signal }, 'stopping: finishing in-flight writes; the lease and keys stay (the pods are still alive)');
  // A second signal while stopping leaves at once, as controller-runtime's signal handler does
  // (and Ctrl-C twice): said in the log, where Node's default action on it would say nothing.
  void service.exitRequested().then((second) => {
    logger.warn({ signal: second }, 'second signal while stopping: exiting now without finishing; the lease and keys stay');
    process.exit(EXIT_FAILURE);
  });
  await service.stop();
  logger.info('stopped');
  return EXIT_OK;
}

async function reconcileOnce(config: Config, kube: KubeAccess, mapping: MappingConfig, logger: Logger, io: Io): Promise<number> {
  const registry = new EtcdRegistry(registryOptionsOf(config, logger));
  // A one-off pass must not create a lease that nobody keeps alive: it adopts the running
  // controller's lease, or (dry-run) plans without one.
  await registry.start({ mode: config.dryRun ? 'read-only' : 'adopt-only' });
  const quietEvents: EventSink = { record: () => undefined };
  const { controller } = new Assembly(config, kube, mapping, registry, logger, quietEvents);
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

async function list(config: Config, kube: KubeAccess, mapping: MappingConfig, logger: Logger, io: Io): Promise<number> {
  const registry = new EtcdRegistry(registryOptionsOf(config, logger));
  await registry.start({ mode: 'read-only' });
  const source = podSourceOf(config, kube, logger);
  const nodes = nodeSourceOf(config, kube, mapping, logger);
  // Grants judge the pods as `run` does, so that a refused claim is not listed as registered.
  const grants = serviceGrantsOf(config, kube, logger);
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
