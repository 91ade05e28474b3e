// Node source: the reflector over Nodes, keeping only name -> zone label (for the JSON value's
// "zone" and the {zone} placeholder, docs/decisions/0008). Only started when the mapping needs
// zones; nodes are cluster-scoped, so the chart's ClusterRole then needs nodes get/list/watch.
import { MetadataValueSource, ownString, type ValueEvent, type ValueSourceOptions } from './value-source.ts';

/** The well-known zone label (set by cloud providers and by the test cluster's KWOK nodes). */
export const ZONE_LABEL = 'topology.kubernetes.io/zone';

export interface NodeSourceOptions extends ValueSourceOptions {
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
    // Slim: only the zone label is kept; a node without it maps to ''.
    super({ what: 'node', apiPath: '/api/v1', resource: 'nodes', valueOf: (metadata) => ownString(metadata.labels, label) ?? '' }, opts);
  }

  zone(node: string): string | undefined {
    return this.value(node);
  }
}
