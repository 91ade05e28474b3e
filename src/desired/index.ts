export { DesiredState } from './desired-state.ts';
export type { PodRef } from './desired-state.ts';
