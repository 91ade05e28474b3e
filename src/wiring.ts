// How the pieces are built from the configuration, for every command: the registry's options,
// the pod, node and namespace sources, the desired state and the controller with its metrics.
import type { Logger } from 'pino';
import type { Config } from './config.ts';
import { Controller } from './controller/controller.ts';
import { HeapTrimmer } from './heap-trim.ts';
import type { EventSink, LeadershipPort } from './controller/ports.ts';
import { DesiredState } from './desired/index.ts';
import type { EventRecorder } from './events/recorder.ts';
import { mappingNeedsZones, type MappingConfig } from './mapping/index.ts';
import { AuditLog, stderrDestination, stdoutDestination } from './observability/log.ts';
import { Metrics } from './observability/metrics.ts';
import type { EtcdRegistry, RegistryOptions } from './registry/index.ts';
import type { KubeAccess } from './source/kube-access.ts';
import { PodSource } from './source/pod-source.ts';
import { NamespaceSource } from './source/namespace-source.ts';
import { NodeSource } from './source/node-source.ts';
import { GRANTS_ANNOTATION, formatStaticGrants } from './grants/grants.ts';
import { ServiceGrants } from './grants/service-grants.ts';

export function registryOptionsOf(config: Config, logger: Logger): RegistryOptions {
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

/**
 * The controller and what it is built from, in dependency order. The metrics read the controller
 * only when scraped, which is after it was built.
 */
export class Assembly {
  readonly metrics: Metrics;
  readonly controller: Controller;

  constructor(config: Config, kube: KubeAccess, mapping: MappingConfig, registry: EtcdRegistry, logger: Logger, events: EventSink & Partial<Pick<EventRecorder, 'stats'>>, leadership?: LeadershipPort) {
    const auditDestination = config.command === 'run' ? stdoutDestination() : stderrDestination();
    const source = podSourceOf(config, kube, logger);
    const nodes = nodeSourceOf(config, kube, mapping, logger);
    const desired = desiredStateOf(mapping, nodes);
    const audit = new AuditLog(config.ownerId, auditDestination);
    const grants = serviceGrantsOf(config, kube, logger);
    this.metrics = new Metrics({
      queueDepth: () => this.controller.queueDepth,
      lastKeepaliveAt: () => registry.lastKeepaliveAt(),
      ownedKeys: () => this.controller.ownedKeyCount(),
      watchedPods: () => source.size,
      sourceRestarts: () => source.stats().restarts,
      watchServerClosures: () => source.stats().serverClosures,
      outOfSpace: () => registry.outOfSpace() !== undefined,
      ...(events.stats === undefined ? {} : { events: events.stats.bind(events) }),
    });
    this.controller = new Controller(
      {
        source, registry, desired, events, audit, metrics: this.metrics, logger: logger.child({ module: 'controller' }), leadership, grants, nodes,
        // A long-running controller gives back the memory of its peaks; a one-shot command exits instead.
        heap: config.command === 'run' ? new HeapTrimmer({ logger: logger.child({ module: 'memory' }) }) : undefined,
      },
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
  }
}

export function podSourceOf(config: Config, kube: KubeAccess, logger: Logger): PodSource {
  return new PodSource({
    kube,
    contentType: config.kubeContentType,
    namespaces: config.namespaces,
    ...(config.labelSelector === undefined ? {} : { labelSelector: config.labelSelector }),
    logger: logger.child({ module: 'source' }),
  });
}

/** The desired state, with zones from the node cache when the mapping uses them. */
export function desiredStateOf(mapping: MappingConfig, nodes: NodeSource | undefined): DesiredState {
  return new DesiredState(mapping, { zoneOf: nodes === undefined ? undefined : (node) => nodes.zone(node) });
}

/** Nodes are watched (name -> zone label) only when the mapping uses zones (docs/decisions/0008). */
export function nodeSourceOf(config: Config, kube: KubeAccess, mapping: MappingConfig, logger: Logger): NodeSource | undefined {
  if (!mappingNeedsZones(mapping)) return undefined;
  return new NodeSource({ kube, contentType: config.kubeContentType, logger: logger.child({ module: 'nodes' }) });
}

/** Service grants (docs/decisions/0009): the Namespace annotation follows --annotation-prefix. */
export function serviceGrantsOf(config: Config, kube: KubeAccess, logger: Logger): ServiceGrants {
  const annotation = `${config.annotationPrefix}${GRANTS_ANNOTATION}`;
  const log = logger.child({ module: 'grants' });
  const namespaces = config.serviceGrants === 'off' ? undefined : new NamespaceSource({ kube, contentType: config.kubeContentType, annotation, logger: log });
  log.info({ mode: config.serviceGrants, annotation, static: formatStaticGrants(config.staticGrants) }, 'service grants');
  return new ServiceGrants({ mode: config.serviceGrants, annotation, staticGrants: config.staticGrants, namespaces, logger: log });
}
