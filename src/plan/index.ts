export { isDelete, limitDeletes, NO_LEASE, plan } from './plan.ts';
export type { LimitResult, PlanInput, PodRef } from './plan.ts';
