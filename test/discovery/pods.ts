// What the discovery tests need to know about their pods, read through kubectl.
import type { Cluster } from '../cluster/cluster.ts';

export interface PodState {
  readonly name: string;
  /** '' until KWOK gives the pod an IP. */
  readonly ip: string;
  readonly ready: boolean;
  /** deletionTimestamp set: the grace period runs. */
  readonly terminating: boolean;
}

export async function listPods(cluster: Cluster, namespace: string, selector?: string): Promise<PodState[]> {
  const args = ['get', 'pods', '-n', namespace, '-o', 'json', ...(selector === undefined ? [] : ['-l', selector])];
  const list = JSON.parse((await cluster.kubectl(args)).stdout) as {
    items: Array<{
      metadata: { name: string; deletionTimestamp?: string };
      status: { podIP?: string; conditions?: Array<{ type: string; status: string }> };
    }>;
  };
  return list.items.map((p) => ({
    name: p.metadata.name,
    ip: p.status.podIP ?? '',
    ready: p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false,
    terminating: p.metadata.deletionTimestamp !== undefined,
  }));
}
