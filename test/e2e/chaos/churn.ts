// Pod churn during a chaos scenario, through the API server (a client of our own, not
// kubectl, to spare the 2 cores a process per operation): a Deployment scaled up and down,
// pods deleted with a short grace period (KWOK keeps them Terminating 2-3 s), and Ready
// flipped off and on again through the status subresource. Seeded, so a run can be replayed.
// Failures (the API server is down in one scenario) are counted, not fatal.
import { AppsV1Api, CoreV1Api, KubeConfig, PatchStrategy, setHeaderOptions, type V1Pod } from '@kubernetes/client-node';

export interface ChurnStats {
  readonly ops: number;
  readonly failed: number;
  readonly byAction: Readonly<Record<string, number>>;
}

/** mulberry32: a tiny seeded PRNG. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Rejects after `ms`: no API call may hold the churn (or its stop()) for long. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const isReady = (pod: V1Pod): boolean => pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;

export class Churn {
  readonly #core: CoreV1Api;
  readonly #apps: AppsV1Api;
  readonly #namespace: string;
  readonly #deployment: string;
  readonly #random: () => number;
  readonly #minReplicas: number;
  readonly #maxReplicas: number;
  #running: Promise<void> | undefined;
  #stopped = false;
  #wake: (() => void) | undefined;
  #ops = 0;
  #failed = 0;
  readonly #byAction: Record<string, number> = {};

  constructor(options: { kubeconfigPath: string; namespace: string; deployment: string; seed: number; minReplicas?: number; maxReplicas?: number }) {
    const kc = new KubeConfig();
    kc.loadFromFile(options.kubeconfigPath);
    this.#core = kc.makeApiClient(CoreV1Api);
    this.#apps = kc.makeApiClient(AppsV1Api);
    this.#namespace = options.namespace;
    this.#deployment = options.deployment;
    this.#random = prng(options.seed);
    this.#minReplicas = options.minReplicas ?? 4;
    this.#maxReplicas = options.maxReplicas ?? 9;
  }

  start(): void {
    this.#stopped = false;
    this.#ops = 0;
    this.#failed = 0;
    for (const key of Object.keys(this.#byAction)) delete this.#byAction[key];
    this.#running = this.#loop();
  }

  /** Operations done since start(). */
  get ops(): number {
    return this.#ops;
  }

  /** Stops after the operation in flight; resolves with what was done since start(). */
  async stop(): Promise<ChurnStats> {
    this.#stopped = true;
    this.#wake?.();
    await this.#running;
    return { ops: this.#ops, failed: this.#failed, byAction: { ...this.#byAction } };
  }

  async #loop(): Promise<void> {
    while (!this.#stopped) {
      try {
        const action = await within(this.#step(), 10_000, 'churn step');
        this.#byAction[action] = (this.#byAction[action] ?? 0) + 1;
        this.#ops++;
      } catch {
        this.#failed++;
      }
      if (this.#stopped) break;
      // A pause that stop() cuts short.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 300 + this.#random() * 500);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  #pick<T>(items: readonly T[]): T | undefined {
    return items[Math.floor(this.#random() * items.length)];
  }

  async #step(): Promise<string> {
    const pods = (await this.#core.listNamespacedPod({ namespace: this.#namespace, labelSelector: `app=${this.#deployment}` })).items
      .filter((pod) => pod.metadata?.deletionTimestamp == null);
    const ready = pods.filter(isReady);
    const unready = pods.filter((pod) => !isReady(pod) && pod.status?.podIP !== undefined);
    const roll = this.#random();
    if (roll < 0.25) {
      const replicas = this.#minReplicas + Math.floor(this.#random() * (this.#maxReplicas - this.#minReplicas + 1));
      await this.#apps.patchNamespacedDeploymentScale(
        { name: this.#deployment, namespace: this.#namespace, body: { spec: { replicas } } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
      return 'scale';
    }
    if (roll < 0.45 && unready.length > 0) return this.#setReady(this.#pick(unready), true);
    if (roll < 0.65 && ready.length > 1) return this.#setReady(this.#pick(ready), false);
    const victim = this.#pick(pods);
    if (victim?.metadata?.name === undefined) return 'idle';
    await this.#core.deleteNamespacedPod({ name: victim.metadata.name, namespace: this.#namespace, gracePeriodSeconds: 3 });
    return 'delete';
  }

  async #setReady(pod: V1Pod | undefined, ready: boolean): Promise<string> {
    const name = pod?.metadata?.name;
    if (name === undefined) return 'idle';
    const status = ready ? 'True' : 'False';
    await this.#core.patchNamespacedPodStatus(
      { name, namespace: this.#namespace, body: { status: { conditions: [{ type: 'Ready', status }, { type: 'ContainersReady', status }] } } },
      setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
    );
    return ready ? 'ready' : 'unready';
  }
}
