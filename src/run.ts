// `etcd-registrar run`: the long-running service. Built in dependency order; started as health
// server, signal handlers, then etcd and the controller (in the background: etcd may be
// unreachable at first); stopped in the reverse order.
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { parseListenAddress, type Config } from './config.ts';
import { retryUntilDone } from './backoff.ts';
import type { Controller } from './controller/controller.ts';
import type { LeadershipPort } from './controller/ports.ts';
import { EventRecorder } from './events/recorder.ts';
import type { MappingConfig } from './mapping/index.ts';
import type { KubeAccess } from './source/kube-access.ts';
import { HealthServer } from './observability/http.ts';
import type { Metrics } from './observability/metrics.ts';
import { EtcdRegistry, type Leadership } from './registry/index.ts';
import type { Fence } from './types.ts';
import { Assembly, registryOptionsOf } from './wiring.ts';

export class Service {
  readonly #config: Config;
  readonly #logger: Logger;
  readonly #shutdown = new AbortController();
  readonly #registry: EtcdRegistry;
  readonly #recorder: EventRecorder;
  readonly #election: Election | undefined;
  readonly #controller: Controller;
  readonly #metrics: Metrics;
  #health: HealthServer | undefined;
  #signals: { readonly first: Promise<string>; readonly second: Promise<string> } | undefined;
  #starting: Promise<void> | undefined;

  constructor(config: Config, kube: KubeAccess, mapping: MappingConfig, logger: Logger) {
    this.#config = config;
    this.#logger = logger;
    this.#registry = new EtcdRegistry(registryOptionsOf(config, logger));
    const identity = env('POD_NAME') ?? `${hostname()}-${process.pid}`;
    // Events wait (up to a second at a time) while registrations are being written, and as long as
    // deregistrations are. The recorder asks the controller only once events flow, after it is built.
    this.#recorder = new EventRecorder({
      kube, logger: logger.child({ module: 'events' }), reportingInstance: identity,
      yieldTo: () => this.#controller.busy(), holdWhile: () => this.#controller.deregistering(),
    });
    this.#election = config.leaderElection ? new Election(this.#registry, identity, config.electionTtlSeconds, logger, this.#shutdown.signal) : undefined;
    const { controller, metrics } = new Assembly(config, kube, mapping, this.#registry, logger, this.#recorder, this.#election);
    this.#controller = controller;
    this.#metrics = metrics;
    this.#registry.on('etcdError', ({ op }: { op: string }) => metrics.etcdErrors.inc({ op }));
  }

  /** Serves the probes, listens for SIGTERM and SIGINT, then connects to etcd and starts the controller without waiting for them. */
  async start(): Promise<void> {
    await this.#serveHealth();
    this.#signals = this.#signalled();
    this.#starting = this.#startController();
  }

  /** The signal (SIGTERM, SIGINT) that asked to stop. */
  stopRequested(): Promise<string> {
    return this.#signals?.first ?? Promise.reject(new Error('Service.stopRequested() before start()'));
  }

  /** A second signal, which asks not to wait for the stop. */
  exitRequested(): Promise<string> {
    return this.#signals?.second ?? Promise.reject(new Error('Service.exitRequested() before start()'));
  }

  /** Finishes in-flight writes and lets go, in the reverse order of start; the lease and keys stay. */
  async stop(): Promise<void> {
    // Resign first: a standby takes over now instead of after the election TTL.
    await this.#election?.resign();
    await this.#controller.stop();
    // A standby still campaigning never finishes starting: do not wait for it.
    await Promise.race([this.#starting, new Promise((resolve) => setTimeout(resolve, 1_000).unref())]);
    await this.#registry.close();
    await this.#recorder.flush(2_000);
    this.#recorder.stop();
    await this.#health?.close();
  }

  async #serveHealth(): Promise<void> {
    if (this.#config.metricsAddress === '') return;
    const { host, port } = parseListenAddress(this.#config.metricsAddress);
    const controller = this.#controller;
    this.#health = new HealthServer({ notReadyReason: () => controller.notReadyReason() }, this.#metrics.registry, { latency: () => controller.recentChangeTimings() });
    const address = await this.#health.listen(host, port);
    this.#logger.info({ address: `${address.address}:${address.port}` }, 'serving /healthz, /readyz and /metrics');
  }

  /** The first SIGTERM or SIGINT asks to stop; a second one, to stop waiting for the stop. */
  #signalled(): { first: Promise<string>; second: Promise<string> } {
    const first = Promise.withResolvers<string>();
    const second = Promise.withResolvers<string>();
    let requested = false;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (requested) {
        second.resolve(signal);
        return;
      }
      requested = true;
      this.#shutdown.abort(new Error(signal));
      first.resolve(signal);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    return { first: first.promise, second: second.promise };
  }

  /** etcd may be unreachable at start: keep trying (unready) rather than crash-looping. */
  #startController(): Promise<void> {
    const logger = this.#logger;
    const signal = this.#shutdown.signal;
    return retryUntilDone(() => this.#registry.start(), { logger, what: 'connecting to etcd and taking the data lease', baseMs: 500, signal })
      .then(() => this.#controller.start())
      .then(
        (report) => logger.info({ changes: report.plan.changes.length, durationMs: Math.round(report.durationMs) }, 'ready'),
        (error: unknown) => {
          if (!signal.aborted) logger.error({ err: error }, 'controller failed to start');
        },
      );
  }
}

/**
 * Leader election over the registry (docs/decisions/0042). The election needs a started
 * registry; the controller campaigns only after that. Each campaign is a new term; a lost term
 * is reported to the controller, which steps down to standby and campaigns again.
 */
class Election implements LeadershipPort {
  readonly #registry: EtcdRegistry;
  readonly #identity: string;
  readonly #ttlSeconds: number;
  readonly #logger: Logger;
  readonly #signal: AbortSignal;
  readonly #lostListeners: ((reason: string) => void)[] = [];
  /** The current (or last) term. */
  #term: Leadership | undefined;

  constructor(registry: EtcdRegistry, identity: string, ttlSeconds: number, logger: Logger, signal: AbortSignal) {
    this.#registry = registry;
    this.#identity = identity;
    this.#ttlSeconds = ttlSeconds;
    this.#logger = logger;
    this.#signal = signal;
  }

  campaign(): Promise<Fence> {
    return retryUntilDone(async () => {
      // A previous term (lost, or a campaign that failed) is given up first: its key
      // would otherwise stand ahead of the new campaign until its lease expires. At most
      // 1 s: a revoke stuck on a dead connection must not hold the new campaign back.
      await Promise.race([this.#term?.resign(), new Promise((resolve) => setTimeout(resolve, 1_000).unref())]);
      const term = this.#registry.leadership(this.#identity, this.#ttlSeconds);
      this.#term = term;
      term.on('lost', (reason) => {
        if (this.#term === term) for (const listener of this.#lostListeners) listener(reason);
      });
      return term.campaign();
      // Capped at 1 s: after a partition heals, the next attempt comes within a second.
    }, { logger: this.#logger, what: 'campaigning for leadership', baseMs: 500, maxMs: 1_000, signal: this.#signal });
  }

  fence(): Fence | undefined {
    return this.#term?.fence();
  }

  onLost(listener: (reason: string) => void): void {
    this.#lostListeners.push(listener);
  }

  async resign(): Promise<void> {
    await this.#term?.resign();
  }
}

function env(name: string): string | undefined {
  const value = process.env[name];
  return value === undefined || value === '' ? undefined : value;
}
