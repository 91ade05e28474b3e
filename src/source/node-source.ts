// Node source: list + watch over Nodes, keeping only name -> zone label (for the JSON value's
// "zone" and the {zone} placeholder, docs/decisions/0008). Same loop as the namespace source.
// Only started when the mapping needs zones; nodes are cluster-scoped, so the chart's
// ClusterRole then needs nodes get/list/watch.
import { CoreV1Api, Watch } from '@kubernetes/client-node';
import type { KubeConfig } from '@kubernetes/client-node';
import { MetadataValueSource, ownString, type ObjectTransport, type SourceTuning, type ValueEvent } from './namespace-source.ts';

/** The well-known zone label (set by cloud providers and by the test cluster's KWOK nodes). */
export const ZONE_LABEL = 'topology.kubernetes.io/zone';

export function kubeNodeTransport(kc: KubeConfig, opts: { watchInactivityMs: number }): ObjectTransport {
  const core = kc.makeApiClient(CoreV1Api);
  return {
    async list(req) {
      const list = await core.listNode({ limit: req.limit, ...(req.continueToken === undefined ? {} : { _continue: req.continueToken }) });
      return { items: list.items, resourceVersion: list.metadata?.resourceVersion ?? '', continueToken: list.metadata?._continue || undefined };
    },
    async watch(req, onEvent, onDone) {
      const watch = new Watch(kc);
      // See pod-source: our watchdog detects silence; client-node's timer is only a backstop.
      (watch as unknown as { requestTimeoutMs: number }).requestTimeoutMs = opts.watchInactivityMs;
      const controller = await watch.watch(
        '/api/v1/nodes',
        { resourceVersion: req.resourceVersion, allowWatchBookmarks: true, timeoutSeconds: req.timeoutSeconds },
        (type, object) => onEvent(type, object),
        onDone,
      );
      return { abort: () => controller.abort() };
    },
  };
}

export interface NodeSourceOptions extends SourceTuning {
  readonly kubeConfig?: KubeConfig;
  readonly transport?: ObjectTransport;
  /** Label holding the zone; default topology.kubernetes.io/zone. */
  readonly label?: string;
}

/** A node's zone changed (zone undefined = no label), it appeared, or it was deleted. */
export type NodeEvent = ValueEvent;

/** What the controller and the mapping need from the node cache (a fake in tests). */
export interface NodeZones {
  /**
   * The zone of a node: undefined while the node is unknown (not listed yet, or deleted),
   * '' when the node is known but has no zone label.
   */
  zone(node: string): string | undefined;
  /** A node's zone changed, or it appeared or vanished: its pods need a new mapping. */
  onChange(listener: (event: NodeEvent) => void): unknown;
  /** Resolves once every node was listed. */
  start(): Promise<void>;
  stop(): Promise<void> | void;
}

export class NodeSource extends MetadataValueSource implements NodeZones {
  constructor(opts: NodeSourceOptions) {
    const label = opts.label ?? ZONE_LABEL;
    let transport: ObjectTransport;
    if (opts.transport !== undefined) transport = opts.transport;
    else if (opts.kubeConfig !== undefined) transport = kubeNodeTransport(opts.kubeConfig, { watchInactivityMs: (opts.watchdogMs ?? 5 * 60_000) + 60_000 });
    else throw new Error('NodeSource needs a kubeConfig (or a transport)');
    // Slim: only the zone label is kept; a node without it maps to ''.
    super({ ...opts, what: 'node', transport, valueOf: (metadata) => ownString(metadata.labels, label) ?? '' });
  }

  zone(node: string): string | undefined {
    return this.value(node);
  }
}
