// Test helpers (no test runner dependency): build SlimPods and configs concisely.
import type { SlimPod } from '../types.ts';
import { defaultMappingConfig } from './config.ts';
import type { MappingConfig } from './config.ts';

export const PREFIX = 'etcd-registrar.io/';

export const testConfig: MappingConfig = { ...defaultMappingConfig, environment: 'PRE' };

export function config(over: Partial<MappingConfig> = {}): MappingConfig {
  return { ...testConfig, ...over };
}

export interface PodOptions extends Partial<Omit<SlimPod, 'annotations'>> {
  /** Annotation suffixes (without the prefix) -> value; merged over register+port defaults. */
  readonly ann?: Readonly<Record<string, string>>;
  /** Raw annotations, replacing everything (prefix not added). */
  readonly annotations?: Readonly<Record<string, string>>;
}

export function makePod(o: PodOptions = {}): SlimPod {
  const ann: Record<string, string> = {};
  if (o.annotations !== undefined) Object.assign(ann, o.annotations);
  else {
    const merged: Record<string, string> = { register: 'true', port: '86', ...o.ann };
    for (const [k, v] of Object.entries(merged)) ann[PREFIX + k] = v;
  }
  const { ann: _a, annotations: _b, ...rest } = o;
  return {
    uid: 'uid-1',
    namespace: 'default',
    name: 'search-1',
    resourceVersion: '1',
    creationTimestamp: '2024-01-01T00:00:00Z',
    labels: { app: 'search' },
    nodeName: 'node-1',
    hostIP: '10.0.0.1',
    podIPs: ['172.18.100.31'],
    hostIPs: ['10.0.0.1'],
    phase: 'Running',
    ready: true,
    terminating: false,
    namedPorts: { http: 8080, metrics: 9090 },
    ...rest,
    annotations: ann,
  };
}
