// Public surface of the pod -> registration mapping.
export {
  defaultMappingConfig,
  DEFAULT_DNS_TTL_SECONDS,
  dnsZoneProblem,
  MAX_DNS_TTL_SECONDS,
  skydnsZonePath,
  keyProblem,
  mappingNeedsZones,
  normalizeKeyRoot,
  mappingConfigProblems,
  validateMappingConfig,
  MAX_LONG_NAME,
  MAX_PORTS,
  MAX_SHORT_NAME,
} from './config.ts';
export type { MappingConfig, MappingProblem, MappingSetting } from './config.ts';
export { dnsInstanceIp, isOptIn, mapPod, SERVICE_LABELS } from './map-pod.ts';
export type { ZoneOf } from './map-pod.ts';
export { PLACEHOLDERS } from './template.ts';
export type { Placeholder } from './template.ts';
export { quote } from './text.ts';
