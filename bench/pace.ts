// The machine's pace: a fixed piece of the controller's own work, timed in a fresh process, so
// that a burst's keys/s can be read against the speed of the machine in that minute. The same
// code measured 0.54 CPU s for a burst on one sitting of the 2-core machine and 1.79 on another
// (docs/benchmarks.md, "A slow sitting"); without a figure of the machine beside it, a slower
// burst could be the code or the machine.
//
// The work: 5,000 watch events of a Ready pod (the burst's pod with its managedFields, ~3.2 kB
// of JSON; the API server's, with the spec's defaults, are ~4.4 kB), each parsed, slimmed and
// mapped to its registration, the slim pods kept in a Map as the cache keeps them. No I/O,
// nothing random: the same instructions on every machine, so only the machine's speed changes
// the time. A warm-up round, then fifteen, each from a collected heap; the median round is the
// figure, the best and the worst are given beside it.
import { performance } from 'node:perf_hooks';
import type { V1Pod } from '@kubernetes/client-node';
import { defaultMappingConfig, mapPod } from '../src/mapping/index.ts';
import { toSlimPod } from '../src/source/slim.ts';
import type { SlimPod } from '../src/types.ts';
import { podBody, withReadyStatus } from './bench.ts';
import { runJsonChild } from './json-child.ts';

export const PACE_EVENTS = 5_000;
const PACE_ROUNDS = 15;
/** The bench's mapping (its controllers run with --environment PRE), one object: prepared once, as in the controller. */
const MAPPING = { ...defaultMappingConfig, environment: 'PRE' };

export interface MachinePace {
  /** Pod events per round. */
  readonly events: number;
  /** Milliseconds of the median round (PACE_EVENTS events parsed, slimmed, mapped and cached). */
  readonly median_ms: number;
  /** Milliseconds of the fastest round. */
  readonly best_ms: number;
  /** Milliseconds of the slowest round: how much the machine's speed moves within seconds. */
  readonly worst_ms: number;
}

/** The text of one watch event of pod `i` turning Ready, as the API server writes it in JSON. */
export function paceEventText(i: number): string {
  const name = `pace-${i}`;
  const pod = withReadyStatus(podBody(name, 'pace'), `10.250.${(i >> 8) & 255}.${i & 255}`, new Date(Date.UTC(2026, 0, 1)));
  const at = '2026-01-01T00:00:00Z';
  pod.metadata = {
    ...pod.metadata,
    namespace: 'bench',
    uid: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
    resourceVersion: String(100_000 + i),
    creationTimestamp: new Date(at),
    managedFields: [
      {
        manager: 'bench', operation: 'Update', apiVersion: 'v1', time: new Date(at), fieldsType: 'FieldsV1',
        fieldsV1: { 'f:metadata': { 'f:annotations': Object.fromEntries(Object.keys(pod.metadata?.annotations ?? {}).map((k) => [`f:${k}`, {}])), 'f:labels': { '.': {}, 'f:app': {} } }, 'f:spec': { 'f:containers': { 'k:{"name":"app"}': { '.': {}, 'f:image': {}, 'f:imagePullPolicy': {}, 'f:name': {}, 'f:ports': { '.': {}, 'k:{"containerPort":86,"protocol":"TCP"}': { '.': {}, 'f:containerPort': {}, 'f:protocol': {} } }, 'f:resources': {}, 'f:terminationMessagePath': {}, 'f:terminationMessagePolicy': {} } }, 'f:dnsPolicy': {}, 'f:enableServiceLinks': {}, 'f:restartPolicy': {}, 'f:schedulerName': {}, 'f:securityContext': {}, 'f:terminationGracePeriodSeconds': {} } },
      },
      {
        manager: 'bench', operation: 'Update', apiVersion: 'v1', time: new Date(at), fieldsType: 'FieldsV1', subresource: 'status',
        fieldsV1: { 'f:status': { 'f:conditions': Object.fromEntries(['PodReadyToStartContainers', 'Initialized', 'ContainersReady', 'Ready', 'PodScheduled'].map((t) => [`k:{"type":"${t}"}`, { '.': {}, 'f:lastProbeTime': {}, 'f:lastTransitionTime': {}, 'f:status': {}, 'f:type': {} }])), 'f:containerStatuses': {}, 'f:hostIP': {}, 'f:hostIPs': {}, 'f:phase': {}, 'f:podIP': {}, 'f:podIPs': { '.': {}, 'k:{"ip":"10.250.0.0"}': { '.': {}, 'f:ip': {} } }, 'f:qosClass': {}, 'f:startTime': {} } },
      },
    ],
  };
  return JSON.stringify({ type: 'MODIFIED', object: { apiVersion: 'v1', kind: 'Pod', ...pod } });
}

/** One round: every event parsed, slimmed, mapped; returns the registrations made (a check that the work was done). */
function oneRound(texts: readonly string[], cache: Map<string, SlimPod>): number {
  let registrations = 0;
  for (const text of texts) {
    const event = JSON.parse(text) as { object: V1Pod };
    const pod = toSlimPod(event.object);
    if (pod === undefined) continue;
    cache.set(pod.uid, pod);
    const mapping = mapPod(pod, MAPPING);
    if (mapping.kind === 'valid' && mapping.serving) registrations += mapping.registrations.length;
  }
  return registrations;
}

/** The measurement itself (in the child). */
export function measurePace(events = PACE_EVENTS, rounds = PACE_ROUNDS): MachinePace {
  const texts = Array.from({ length: events }, (_, i) => paceEventText(i));
  const times: number[] = [];
  const collect = (globalThis as { gc?: () => void }).gc;
  oneRound(texts, new Map()); // warm-up: the JIT's first tiers are not the machine's pace
  for (let r = 0; r < rounds; r++) {
    // Each round from a collected heap: the last round's garbage is not this one's cost.
    collect?.();
    const cache = new Map<string, SlimPod>();
    const t0 = performance.now();
    const made = oneRound(texts, cache);
    times.push(performance.now() - t0);
    if (made !== events) throw new Error(`pace: ${made} registrations from ${events} Ready pods`);
  }
  times.sort((a, b) => a - b);
  const ms = (x: number): number => Math.round(x * 10) / 10;
  return { events, median_ms: ms(times[Math.floor(times.length / 2)] ?? 0), best_ms: ms(times[0] ?? 0), worst_ms: ms(times.at(-1) ?? 0) };
}

/** The machine's pace, measured in a fresh Node process (its own heap and JIT, the same each time). */
export function machinePace(): Promise<MachinePace> {
  return runJsonChild<MachinePace>(import.meta.filename, ['child'], 'machine pace child');
}

if (process.argv[1] === import.meta.filename && process.argv[2] === 'child') {
  process.stdout.write(JSON.stringify(measurePace()));
  process.exit(0);
}
