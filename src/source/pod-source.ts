// Pod source: the reflector (reflector.ts, docs/decisions/0020) over pods, keeping only slim
// records keyed by uid; one stream per --namespaces entry (or one over all namespaces).
import type { V1Pod } from '@kubernetes/client-node';
import { preciseNow } from '../clock.ts';
import type { PodEvent, SlimPod } from '../types.ts';
import { Reflector, type Kind, type ReflectorOptions } from './reflector.ts';
import { slimChanged, toSlimPod } from './slim.ts';

// PodEvent.receivedAt: epoch ms (fractional, from the monotonic clock) at which the watch event
// (or the list that found the change) arrived; the controller times its latency stages from it.
export type { PodEvent };

export type PodListener = (event: PodEvent) => void;

export interface PodSourceOptions extends ReflectorOptions {
  /** Empty = all namespaces (one stream); otherwise one stream per namespace. */
  readonly namespaces: readonly string[];
}

/**
 * Pods as the reflector sees them. Items are plain JSON, not client-node's typed models:
 * timestamps stay RFC 3339 strings, which toSlimPod reads like the typed Dates.
 */
export const podKind: Kind<SlimPod, PodEvent> = {
  what: 'pod',
  apiPath: '/api/v1',
  resource: 'pods',
  valueOf: (object) => toSlimPod(object as V1Pod),
  keyOf: (pod) => pod.uid,
  // A status heartbeat changes only the resourceVersion: no event (the cache keeps the newer).
  changed: slimChanged,
  // Every pod event, from a relist or a watch, is made here and nowhere else.
  // Made as the watch event (or the relist) is applied, so the stamp is its arrival.
  eventOf: (type, pod) => ({ type, pod, receivedAt: preciseNow() }),
};

export class PodSource extends Reflector<SlimPod, PodEvent> {
  constructor(opts: PodSourceOptions) {
    super(podKind, opts);
  }
}
