// Unit tests of the registry's option checks and defaults, without etcd.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { RegistryProgrammingError } from './keys.ts';
import { DEFAULT_OWNER_RECORD_PREFIX, registrySettings, type RegistryOptions } from './options.ts';
import { DEFAULT_RETRY } from './retry.ts';

const base: RegistryOptions = {
  endpoints: ['127.0.0.1:2379'],
  ownerId: 'o1',
  keyRoot: '/svc',
  leaseTtlSeconds: 10,
  callTimeoutMs: 1000,
  logger: pino({ level: 'silent' }),
};

test('defaults: record key under the default prefix, reserved from the key space, 100 ops, 4 in flight', () => {
  const s = registrySettings({ ...base, reservedPrefixes: ['/svc/election/'], retry: { attempts: 2 } });
  assert.equal(s.recordKey, `${DEFAULT_OWNER_RECORD_PREFIX}o1`);
  assert.deepEqual(s.space, { root: '/svc/', reserved: [DEFAULT_OWNER_RECORD_PREFIX, '/svc/election/'] });
  assert.deepEqual([s.maxOps, s.inflight, s.pageSize], [100, 4, 5_000]);
  assert.deepEqual(s.retry, { ...DEFAULT_RETRY, attempts: 2 });
});

test('explicit values are normalised: prefix gets its slash, counts are floored and at least 1', () => {
  const s = registrySettings({ ...base, ownerRecordPrefix: '/records', maxOpsPerTxn: 128, maxInflightTxns: 0.5, pageSize: 10.9 });
  assert.equal(s.recordKey, '/records/o1');
  assert.deepEqual([s.maxOps, s.inflight, s.pageSize], [128, 1, 10]);
});

test('bad options throw RegistryProgrammingError naming the option', () => {
  const bad: [Partial<RegistryOptions>, RegExp][] = [
    [{ ownerId: '' }, /owner id/],
    [{ ownerId: 'a/b' }, /owner id/],
    [{ ownerId: 'a\nb' }, /owner id/],
    [{ ownerRecordPrefix: 'records' }, /owner record prefix/],
    [{ keyRoot: 'svc' }, /key root/],
    [{ maxOpsPerTxn: 1 }, /maxOpsPerTxn/],
    [{ maxOpsPerTxn: 129 }, /maxOpsPerTxn/],
    [{ maxOpsPerTxn: 2.5 }, /maxOpsPerTxn/],
    [{ leaseTtlSeconds: 1 }, /leaseTtlSeconds/],
    [{ leaseTtlSeconds: 2.5 }, /leaseTtlSeconds/],
    [{ callTimeoutMs: 0 }, /callTimeoutMs/],
    [{ callTimeoutMs: Number.NaN }, /callTimeoutMs/],
  ];
  for (const [override, message] of bad) {
    assert.throws(() => registrySettings({ ...base, ...override }), (err: unknown) => err instanceof RegistryProgrammingError && message.test(err.message), JSON.stringify(override));
  }
});
