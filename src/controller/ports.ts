// The small interfaces the controller needs from its collaborators, so that it can be
// wired to the real pod source, registry and event recorder, or to fakes in unit tests.
import type { Admission, Admit } from '../desired/index.ts';
import type { ApplyOptions, ApplyResult, Change, CurrentEntry, DesiredEntry, EventType, Fence, PodEvent, PodMapping, PodRef, ReadBasis, SlimPod } from '../types.ts';

export type { ApplyResult, EventType, Fence, PodEvent, PodRef };

export interface PodSourcePort {
  onChange(listener: (event: PodEvent) => void): void;
  /** Resolves once the first full list of every watched namespace succeeded. */
  start(): Promise<void>;
  /** False between a watch failure and the relist that follows it. */
  synced(): boolean;
  /** Every pod in the cache (a namespace's grants changed: its pods get a new verdict). */
  list(): readonly SlimPod[];
  stop(): Promise<void> | void;
}

/** The node cache (zones), present only when the mapping uses zones (docs/decisions/0008). */
export interface NodeFeed {
  /** A node's zone changed, or it appeared or vanished. */
  onChange(listener: (event: { readonly name: string }) => void): unknown;
  /** Resolves once every node was listed. */
  start(): Promise<void>;
  stop(): Promise<void> | void;
}

export interface DesiredIndex {
  /** `admit` (service grants) decides about pods with registrations; see DesiredState. */
  upsertPod(pod: SlimPod, admit?: Admit): { mapping: PodMapping; affectedKeys: readonly string[]; admission?: Admission | undefined };
  removePod(uid: string): readonly string[];
  desiredFor(key: string): DesiredEntry | undefined;
  /** A known pod (serving or not) that maps to the key. */
  claimant(key: string): PodRef | undefined;
  desiredAll(): ReadonlyMap<string, DesiredEntry>;
}

export interface RegistryPort {
  leaseId(): string;
  adoptableLeases(): ReadonlySet<string>;
  healthy(): boolean;
  /** Set while etcd rejects writes for lack of space (its NOSPACE alarm); cleared by the next write that applies. */
  outOfSpace(): string | undefined;
  /**
   * The keys of the directories that hold our keys or `wantedKeys` (docs/decisions/0013); with
   * `full`, read from every key under the root, and with our keys in unmarked directories too.
   */
  readScoped(
    wantedKeys: Iterable<string>,
    options?: { readonly full?: boolean; readonly unchangedSince?: ReadBasis | undefined },
  ): Promise<({ readonly entries: Map<string, CurrentEntry> } & Partial<ReadBasis>) | (ReadBasis & { readonly unchanged: true })>;
  /** Marks the directories of the entries on our leases (found by a full read) for later scoped reads. */
  markDirectories(entries: Iterable<CurrentEntry>): Promise<number>;
  apply(changes: readonly Change[], options?: ApplyOptions): Promise<readonly ApplyResult[]>;
  on(event: 'leaseChanged', listener: (event: { previous: string; current: string }) => void): unknown;
}

/** Leader election: only the leader starts workers; its writes carry its fence. */
export interface LeadershipPort {
  /** Resolves once this replica leads. */
  campaign(): Promise<Fence>;
  fence(): Fence | undefined;
  /** Called when an elected term ends without a resign (campaign lease lost, etcd unreachable). */
  onLost(listener: (reason: string) => void): void;
}

export interface EventSink {
  record(pod: PodRef, type: EventType, reason: string, note: string): void;
}

/** Gives the memory of a transient peak back when it is worth a short pause (src/heap-trim.ts). */
export interface HeapTrimPort {
  afterPeak(reason: string): boolean;
}
