export { DesiredState } from './desired-state.ts';
export type { Admission, Admit, PodRef } from './desired-state.ts';
