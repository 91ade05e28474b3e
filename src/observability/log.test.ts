import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { AuditLog, createLogger } from './log.ts';

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
    lines: () => chunks.join('').split('\n').filter((line) => line !== '').map((line) => JSON.parse(line) as Record<string, unknown>),
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
