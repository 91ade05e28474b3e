// Public surface of the registry: the only module that talks to etcd.
export {
  DEFAULT_OWNER_RECORD_PREFIX,
  EtcdRegistry,
  type ApplyResult,
  type Fence,
  type LeaseChangedEvent,
  type LeaseLostEvent,
  type LeaseMode,
  type RegistryEvents,
  type RegistryOptions,
  type StartOptions,
} from './registry.ts';
export type { AuthOptions, TlsOptions } from './client.ts';
export { Leadership } from './election.ts';
export { RegistryProgrammingError } from './keys.ts';
export type { OwnerRecord } from './owner-record.ts';
export type { RetryPolicy } from './retry.ts';
