// Namespace source: the reflector over Namespaces, keeping only one annotation per namespace
// (the service grants, docs/decisions/0009). Nothing is revoked by a watch gap: a stale cache
// keeps the last known grants until the relist.
import { MetadataValueSource, ownString, type ValueEvent, type ValueSourceOptions } from './value-source.ts';

/** A namespace appeared or its annotation changed (value undefined = absent), or it was deleted. */
export type NamespaceEvent = ValueEvent;

export interface NamespaceSourceOptions extends ValueSourceOptions {
  /** The full annotation name kept per namespace, e.g. "etcd-registrar.io/allowed-services". */
  readonly annotation: string;
}

/** Namespaces, keeping one annotation each (the service grants). */
export class NamespaceSource extends MetadataValueSource {
  constructor(opts: NamespaceSourceOptions) {
    const { annotation } = opts;
    super({ what: 'namespace', apiPath: '/api/v1', resource: 'namespaces', valueOf: (metadata) => ownString(metadata.annotations, annotation) }, opts);
  }

  annotation(name: string): string | undefined {
    return this.value(name);
  }
}
