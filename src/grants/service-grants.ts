// Service grants at run time: the pure grant table fed by the namespace source.
import type { Logger } from 'pino';
import type { NamespaceEvent } from '../source/namespace-source.ts';
import { GrantTable, type GrantStatus, type GrantsMode } from './grants.ts';

/** What the controller needs from the service grants (docs/decisions/0009). */
export interface GrantsPort {
  readonly mode: GrantsMode;
  /** Full name of the Namespace annotation, for messages. */
  readonly annotation: string;
  /** strict: resolves once every namespace was listed; open/off: at once (open lists in the background). */
  start(): Promise<void>;
  stop(): Promise<void> | void;
  /** A namespace's grants changed, or it appeared or vanished: its pods need a new verdict. */
  onChange(listener: (namespace: string) => void): void;
  status(namespace: string, service: string): GrantStatus;
}

/** The namespace source as seen from here (a fake in tests). */
export interface NamespaceFeed {
  onChange(listener: (event: NamespaceEvent) => void): unknown;
  start(): Promise<void>;
  stop(): Promise<void> | void;
}

export interface ServiceGrantsOptions {
  readonly mode: GrantsMode;
  readonly annotation: string;
  readonly staticGrants: ReadonlyMap<string, readonly string[]>;
  /** Absent in mode off (nothing is watched). */
  readonly namespaces: NamespaceFeed | undefined;
  readonly logger: Logger;
}

export class ServiceGrants implements GrantsPort {
  readonly mode: GrantsMode;
  readonly annotation: string;
  readonly #table: GrantTable;
  readonly #namespaces: NamespaceFeed | undefined;
  readonly #logger: Logger;
  readonly #listeners: Array<(namespace: string) => void> = [];

  constructor(options: ServiceGrantsOptions) {
    this.mode = options.mode;
    this.annotation = options.annotation;
    this.#table = new GrantTable(options.staticGrants);
    this.#namespaces = options.mode === 'off' ? undefined : options.namespaces;
    this.#logger = options.logger;
    this.#namespaces?.onChange((event) => this.#apply(event));
  }

  async start(): Promise<void> {
    const source = this.#namespaces;
    if (source === undefined) return;
    const listed = source.start();
    if (this.mode === 'strict') {
      await listed;
      return;
    }
    // open: nothing is refused, so registrations need not wait for the namespaces (an
    // upgrade whose RBAC cannot list namespaces yet keeps working; the source logs why).
    listed.then(undefined, (error: unknown) => this.#logger.debug({ err: error }, 'namespace source did not start'));
  }

  stop(): Promise<void> | void {
    return this.#namespaces?.stop();
  }

  onChange(listener: (namespace: string) => void): void {
    this.#listeners.push(listener);
  }

  status(namespace: string, service: string): GrantStatus {
    return this.#table.status(namespace, service);
  }

  #apply(event: NamespaceEvent): void {
    let changed: boolean;
    if (event.type === 'delete') {
      changed = this.#table.removeNamespace(event.name);
    } else {
      const update = this.#table.setNamespace(event.name, event.value);
      changed = update.changed;
      if (update.problems.length > 0) {
        this.#logger.warn({ namespace: event.name, annotation: this.annotation, problems: update.problems }, 'namespace grants annotation has invalid entries; they are ignored');
      }
      if (changed && event.value !== undefined) this.#logger.info({ namespace: event.name, grants: event.value }, 'namespace grants');
    }
    if (!changed) return;
    for (const listener of this.#listeners) listener(event.name);
  }
}
