// A memory cgroup for one process, so that the controller runs under the limit the chart sets
// (values.yaml resources.limits.memory): Node sizes V8's heap from the memory it may use, so
// "Node's defaults" on a 24 GB bench machine are not the defaults a pod gets. Linux only, and
// only where this process may create cgroups (root, cgroup v1 memory controller or v2).
import { mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';

export interface MemoryLimit {
  readonly limitMb: number;
  /** Runs `exec "$@"` inside the cgroup: a launcher for startController. */
  readonly launcher: readonly string[];
  /** Removes the cgroup (once its process has exited). */
  remove(): void;
}

/** A child cgroup of this process's memory cgroup with `limitMb`; why not, when it cannot be made. */
export function memoryLimit(limitMb: number, name: string): MemoryLimit | string {
  try {
    const lines = readFileSync('/proc/self/cgroup', 'utf8').split('\n');
    const v1 = lines.find((line) => line.split(':')[1]?.split(',').includes('memory'));
    const [root, own, file] = v1 !== undefined
      ? ['/sys/fs/cgroup/memory', v1.split(':')[2] ?? '/', 'memory.limit_in_bytes']
      : ['/sys/fs/cgroup', lines.find((line) => line.startsWith('0::'))?.slice(3) ?? '/', 'memory.max'];
    const dir = join(root, own, name);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, file), String(limitMb * 1024 * 1024));
    return {
      limitMb,
      launcher: ['/bin/sh', '-c', `echo $$ > ${join(dir, 'cgroup.procs')} && exec "$@"`, 'sh'],
      remove: () => {
        try {
          rmdirSync(dir);
        } catch {
          // Still busy or already gone: the kernel frees an empty cgroup's memory either way.
        }
      },
    };
  } catch (error) {
    return `no memory cgroup could be made (${(error as Error).message})`;
  }
}

/** The chart's default memory limit (values.yaml resources.limits.memory), in MiB. */
export function chartMemoryLimitMb(): number {
  const values = parse(readFileSync(new URL('../charts/etcd-registrar/values.yaml', import.meta.url), 'utf8')) as { resources?: { limits?: { memory?: unknown } } };
  const memory = String(values.resources?.limits?.memory ?? '');
  const quantity = /^(\d+)(Mi|Gi)$/.exec(memory);
  if (quantity === null) throw new Error(`charts/etcd-registrar/values.yaml: resources.limits.memory ${JSON.stringify(memory)} is not in Mi or Gi`);
  return Number(quantity[1]) * (quantity[2] === 'Gi' ? 1024 : 1);
}
