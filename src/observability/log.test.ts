import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { AuditLog, COMPONENT, createLogger } from './log.ts';
import { parseJsonStrict, parseLogLinesStrict } from './testing.ts';

function capture(): { stream: Writable; lines: () => Array<Record<string, unknown>> } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(chunk.toString());
      callback();
    },
  });
  return {
    stream,
    // Strict: a line with a key twice fails the test (log pipelines drop such lines).
    lines: () => parseLogLinesStrict(chunks.join('')),
  };
}

describe('AuditLog', () => {
  it('writes the audit schema as one JSON line, whatever the log level', () => {
    const out = capture();
    const audit = new AuditLog('cluster-a', out.stream);
    audit.write({ action: 'register', key: '/search_PRE/10.0.0.1-86', value: '10.0.0.1:86', pod: 'ns/p', podUid: 'u1', reason: 'pod Ready', leaseId: '42', outcome: 'ok' });
    const [line] = out.lines();
    assert.ok(line);
    for (const [field, value] of Object.entries({ audit: true, action: 'register', key: '/search_PRE/10.0.0.1-86', value: '10.0.0.1:86', pod: 'ns/p', podUid: 'u1', reason: 'pod Ready', owner: 'cluster-a', leaseId: '42', outcome: 'ok' })) {
      assert.deepEqual(line[field], value, field);
    }
  });

  it('frames a record exactly as the logger frames the same fields, so log pipelines parse both alike', () => {
    const viaAudit = capture();
    const viaLogger = capture();
    // Characters JSON must escape, and ones it must not (U+2028, non-ASCII), in a field the pod controls.
    const entry = { action: 'register', key: '/svc_PRE/10.0.0.1-86', value: '10.0.0.1:86', pod: 'ns/p', podUid: 'u1', reason: 'pod "Ready"\\\n\u2028é\u0001', leaseId: null, outcome: 'ok' } as const;
    const record = new AuditLog('cluster-a', viaAudit.stream).write(entry);
    createLogger('debug', viaLogger.stream).info(record, 'audit');
    const withoutTime = (lines: Array<Record<string, unknown>>): string[] => lines.map(({ time, ...rest }) => {
      assert.match(String(time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      return JSON.stringify(rest);
    });
    assert.deepEqual(withoutTime(viaAudit.lines()), withoutTime(viaLogger.lines()));
  });

  it('writes the records of together() in one write when it returns, even when it throws', () => {
    const writes: string[] = [];
    const audit = new AuditLog('o', { write: (line: string) => void writes.push(line) });
    const record = (key: string): void => void audit.write({ action: 'register', key, value: 'v', pod: 'ns/p', podUid: 'u', reason: 'pod Ready', leaseId: '1', outcome: 'ok' });
    audit.together(() => {
      record('/a');
      record('/b');
      assert.equal(writes.length, 0, 'held until the batch ends');
    });
    assert.throws(() => audit.together(() => {
      record('/c');
      throw new Error('bookkeeping failed');
    }), /bookkeeping failed/);
    record('/d');
    assert.deepEqual(writes.map((chunk) => parseLogLinesStrict(chunk).map((line) => line['key'])), [['/a', '/b'], ['/c'], ['/d']]);
  });

  it('hands records to subscribers', () => {
    const out = capture();
    const audit = new AuditLog('o', out.stream);
    const seen: string[] = [];
    audit.subscribe((record) => seen.push(record.action));
    audit.write({ action: 'skip', key: null, value: null, pod: 'ns/p', podUid: 'u', reason: 'bad port', leaseId: null, outcome: 'ok' });
    assert.deepEqual(seen, ['skip']);
  });
});

describe('createLogger', () => {
  it('redacts secrets', () => {
    const out = capture();
    const logger = createLogger('info', out.stream);
    logger.info({ password: 'hunter2', etcd: { auth: { password: 'p2' } }, credentials: { privateKey: 'PRIVATE' } }, 'connecting');
    const text = JSON.stringify(out.lines());
    assert.ok(!text.includes('hunter2') && !text.includes('p2') && !text.includes('PRIVATE'), text);
  });
});

describe('log lines', () => {
  it('carry one key per field when a part binds what its parent bound (registry: module, then component)', () => {
    const out = capture();
    const logger = createLogger('info', out.stream);
    // As wired in cli.ts, and as src/registry binds its own name again.
    logger.child({ module: 'registry' }).child({ component: 'registry' }).info({ endpoint: 'x' }, 'connected');
    logger.child({ module: 'controller' }).child({ module: 'controller', pass: 3 }).warn('slow');
    logger.info('plain');
    assert.deepEqual(
      out.lines().map(({ time: _time, ...rest }) => rest),
      [
        { level: 'info', component: COMPONENT, module: 'registry', endpoint: 'x', msg: 'connected' },
        { level: 'warn', component: COMPONENT, module: 'controller', pass: 3, msg: 'slow' },
        { level: 'info', component: COMPONENT, msg: 'plain' },
      ],
    );
  });

  it('the strict parser rejects a key given twice, as the old lines had it', () => {
    assert.throws(() => parseJsonStrict('{"component":"etcd-registrar","module":"registry","component":"registry"}'), /duplicate key "component"/);
    assert.throws(() => parseJsonStrict('{"a":{"b":1,"b":2}}'), /duplicate key "b"/);
    assert.deepEqual(parseJsonStrict('{"a":[1,{"b":"\\"x"}],"c":null,"d":-1.5e3,"e":true}'), { a: [1, { b: '"x' }], c: null, d: -1500, e: true });
  });
});
