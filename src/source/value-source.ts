// A source that keeps one string per named object, read from its metadata (a namespace's
// service-grants annotation, a node's zone label): the reflector (reflector.ts) over a
// cluster-scoped kind, reporting only objects whose value changed, appeared or vanished.
import type { V1ObjectMeta } from '@kubernetes/client-node';
import { Reflector, type Kind, type ReflectorOptions } from './reflector.ts';

/** An object appeared or its value changed (value undefined = absent), or it was deleted. */
export type ValueEvent =
  | { readonly type: 'upsert'; readonly name: string; readonly value: string | undefined }
  | { readonly type: 'delete'; readonly name: string };

/** The record kept per object. */
export interface NamedValue {
  readonly name: string;
  /** '' is a value; undefined = absent. */
  readonly value: string | undefined;
}

export interface ValueKind {
  readonly what: string;
  readonly apiPath: string;
  readonly resource: string;
  /** The one string kept per object (undefined = absent). */
  valueOf(metadata: V1ObjectMeta): string | undefined;
}

/** Options of a value source: how to reach the API server, and the loop tuning. */
export type ValueSourceOptions = Omit<ReflectorOptions, 'namespaces'>;

function kindOf(spec: ValueKind): Kind<NamedValue, ValueEvent> {
  return {
    what: spec.what,
    apiPath: spec.apiPath,
    resource: spec.resource,
    valueOf: (object) => {
      const metadata = (object as { metadata?: V1ObjectMeta }).metadata;
      const name = metadata?.name;
      return metadata === undefined || name === undefined ? undefined : { name, value: spec.valueOf(metadata) };
    },
    keyOf: (record) => record.name,
    changed: (previous, next) => previous.value !== next.value,
    eventOf: (type, { name, value }) => (type === 'upsert' ? { type, name, value } : { type, name }),
  };
}

export class MetadataValueSource extends Reflector<NamedValue, ValueEvent> {
  constructor(kind: ValueKind, opts: ValueSourceOptions) {
    super(kindOf(kind), opts);
  }

  /** The value kept for an object (undefined = unknown object or absent value). */
  value(name: string): string | undefined {
    return this.get(name)?.value;
  }
}

/** record[key] when it is an own string property (never '__proto__' and friends). */
export function ownString(record: Readonly<Record<string, string>> | undefined, key: string): string | undefined {
  if (record === undefined || !Object.hasOwn(record, key)) return undefined;
  const value = record[key];
  return typeof value === 'string' ? value : undefined;
}
