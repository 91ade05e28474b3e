// Logging: JSON lines on stdout, written synchronously so that nothing is lost on exit or
// crash (pino transports run in worker threads and can drop the last lines).
import { pino, type DestinationStream, type Logger } from 'pino';
import type { AuditRecord } from '../types.ts';
import type { LogLevel } from '../config.ts';

/** Field names that may carry secrets anywhere in a log object. */
export const redactedPaths = [
  'password', '*.password', 'passwordFile', 'token', '*.token', 'authorization', '*.authorization',
  'headers.authorization', 'privateKey', '*.privateKey', 'credentials', '*.credentials',
  'auth', '*.auth', 'clientKey', '*.clientKey', 'certChain', '*.certChain',
];

export function stdoutDestination(): DestinationStream {
  return pino.destination({ fd: 1, sync: true });
}

export function stderrDestination(): DestinationStream {
  return pino.destination({ fd: 2, sync: true });
}

/** The program's name, in every line's `component`; the part of it is `module`. */
export const COMPONENT = 'etcd-registrar';

/**
 * Children keep one key per field. A child's `component` names a part of the program,
 * which is `module` here (`component` stays the program's name in every line: log
 * pipelines filter on it). pino appends a child's bindings to its parent's as JSON text,
 * so a key bound again (`module` by the wiring, then by the part itself) would appear twice
 * in every line, and log pipelines drop or reject such lines: the inner value replaces it.
 */
function withOneKeyPerField(logger: Logger): Logger {
  type Child = (this: Logger, bindings: pino.Bindings, options?: pino.ChildLoggerOptions) => Logger;
  const pinoChild = logger.child as unknown as Child;
  const child: Child = function (bindings, options) {
    const own: pino.Bindings = {};
    for (const [key, value] of Object.entries(bindings)) {
      own[key === 'component' && value !== COMPONENT ? 'module' : key] = value;
    }
    const inherited = this.bindings();
    const instance = pinoChild.call(this, own, options);
    if (Object.keys(own).some((key) => key in inherited)) {
      const merged = JSON.stringify({ ...inherited, ...own }).slice(1, -1);
      (instance as unknown as Record<symbol, unknown>)[pino.symbols.chindingsSym] = merged === '' ? '' : `,${merged}`;
    }
    return instance;
  };
  // Children are created from their parent's prototype chain, so they inherit this child().
  (logger as unknown as { child: unknown }).child = child;
  return logger;
}

let lastTimeMs = Number.NaN;
let lastTimeField = '';

/**
 * pino's isoTime, formatted once per millisecond: a batch writes hundreds of audit lines in the
 * same millisecond, and a Date per line was a tenth of the audit trail's cost.
 */
function isoTimeField(): string {
  const now = Date.now();
  if (now !== lastTimeMs) {
    lastTimeMs = now;
    lastTimeField = `,"time":"${new Date(now).toISOString()}"`;
  }
  return lastTimeField;
}

export function createLogger(level: LogLevel, destination: DestinationStream = stdoutDestination()): Logger {
  const logger = pino(
    {
      level,
      base: { component: COMPONENT },
      timestamp: isoTimeField,
      redact: { paths: redactedPaths, censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
  return withOneKeyPerField(logger);
}

/** An audit record without the fields the log fills in itself. */
export type AuditEntry = Omit<AuditRecord, 'audit' | 'owner'>;

export type AuditSink = (record: AuditRecord) => void;

// The frame of a logger line (createLogger) around an audit record's fields.
const AUDIT_LINE_HEAD = '{"level":"info"';
const AUDIT_LINE_COMPONENT = `,"component":${JSON.stringify(COMPONENT)},`;
const AUDIT_LINE_TAIL = ',"msg":"audit"}\n';

/**
 * The audit trail: one JSON line per change with the schema in the README (Audit log), in the
 * same frame as the logger's lines (level, time, component, the record, msg). Written here
 * rather than through a logger: no --log-level may silence it, and one JSON.stringify of the
 * fixed record costs ~0.8 µs where pino's field-by-field serialisation cost 2-2.5 µs, the largest
 * part of recording a burst's results.
 */
export class AuditLog {
  readonly #owner: string;
  readonly #sinks: AuditSink[] = [];
  readonly #destination: DestinationStream;
  /** Lines of the batch being recorded (see together()); undefined outside one. */
  #held: string[] | undefined;

  constructor(owner: string, destination: DestinationStream = stdoutDestination()) {
    this.#owner = owner;
    this.#destination = destination;
  }

  /**
   * The records `record` writes go out in one write when it returns (or throws) instead of one
   * write each: a batch of a thousand changes made a thousand synchronous writes to stdout, ~5 %
   * of the controller's CPU in a burst. Synchronous: nothing else runs in between, so no line
   * waits longer than the batch's own bookkeeping.
   */
  together<T>(record: () => T): T {
    if (this.#held !== undefined) return record();
    this.#held = [];
    try {
      return record();
    } finally {
      const held = this.#held;
      this.#held = undefined;
      if (held.length > 0) this.#destination.write(held.join(''));
    }
  }

  /** Also hands every record to `sink` (metrics, tests, the reconcile --once report). */
  subscribe(sink: AuditSink): void {
    this.#sinks.push(sink);
  }

  write(entry: AuditEntry): AuditRecord {
    const record: AuditRecord = {
      audit: true,
      action: entry.action,
      key: entry.key,
      value: entry.value,
      pod: entry.pod,
      podUid: entry.podUid,
      reason: entry.reason,
      owner: this.#owner,
      leaseId: entry.leaseId,
      outcome: entry.outcome,
    };
    const line = `${AUDIT_LINE_HEAD}${isoTimeField()}${AUDIT_LINE_COMPONENT}${JSON.stringify(record).slice(1, -1)}${AUDIT_LINE_TAIL}`;
    if (this.#held === undefined) this.#destination.write(line);
    else this.#held.push(line);
    for (const sink of this.#sinks) sink(record);
    return record;
  }
}
