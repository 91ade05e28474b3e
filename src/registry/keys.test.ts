// Unit tests of the registry's pure helpers: key-space guards, byte ranges, backoff.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GRPCDeadlineExceededError, GRPCUnavailableError, EtcdPermissionDeniedError } from 'etcd3';
import { assertWritable, keySuccessor, normaliseRoot, prefixEnd, RegistryProgrammingError } from './keys.ts';
import { backoffDelay, isCompacted, isTransient, withRetry } from './retry.ts';
import { normaliseEndpoints } from './client.ts';

test('normaliseRoot requires a leading slash and adds one trailing slash', () => {
  assert.equal(normaliseRoot('/', 'r'), '/');
  assert.equal(normaliseRoot('/services', 'r'), '/services/');
  assert.equal(normaliseRoot('/services/', 'r'), '/services/');
  assert.throws(() => normaliseRoot('services', 'r'), RegistryProgrammingError);
  assert.throws(() => normaliseRoot('', 'r'), RegistryProgrammingError);
  assert.throws(() => normaliseRoot('/a\nb', 'r'), RegistryProgrammingError);
});

test('assertWritable accepts keys strictly under the root and outside reserved prefixes', () => {
  const space = { root: '/svc/', reserved: ['/svc/etcd-registrar/'] };
  assertWritable(space, '/svc/search_PRE/10.0.0.1-86');
  for (const bad of ['/svc/', '/svc', '/svc2/x', '/other/x', 'svc/x', '', '/svc/a\u0000', '/svc/etcd-registrar/owners/x']) {
    assert.throws(() => assertWritable(space, bad), RegistryProgrammingError, bad);
  }
  assert.throws(() => assertWritable(space, undefined as unknown as string), RegistryProgrammingError);
});

test('prefixEnd and keySuccessor bound byte ranges', () => {
  assert.deepEqual(prefixEnd(Buffer.from('/')), Buffer.from('0'));
  assert.deepEqual(prefixEnd(Buffer.from('/a/')), Buffer.from('/a0'));
  assert.deepEqual(prefixEnd(Buffer.from([0x61, 0xff, 0xff])), Buffer.from([0x62]));
  assert.deepEqual(prefixEnd(Buffer.from([0xff])), Buffer.from([0]));
  const input = Buffer.from('/a');
  prefixEnd(input);
  assert.deepEqual(input, Buffer.from('/a'), 'the input is not modified');
  assert.deepEqual(keySuccessor(Buffer.from('ab')), Buffer.from([0x61, 0x62, 0]));
});

test('backoffDelay grows exponentially with jitter and is capped', () => {
  assert.equal(backoffDelay(1, 100, 3000, () => 0), 50);
  assert.equal(backoffDelay(1, 100, 3000, () => 1), 100);
  assert.equal(backoffDelay(3, 100, 3000, () => 1), 400);
  assert.equal(backoffDelay(20, 100, 3000, () => 1), 3000);
  assert.equal(backoffDelay(20, 100, 3000, () => 0), 1500);
});

test('transient errors are retried with backoff, others are not', async () => {
  assert.ok(isTransient(new GRPCUnavailableError('x')));
  assert.ok(isTransient(new GRPCDeadlineExceededError('x')));
  assert.ok(!isTransient(new EtcdPermissionDeniedError('x')));
  assert.ok(!isTransient(new Error('x')));
  assert.ok(isCompacted(new Error('etcdserver: mvcc: required revision has been compacted')));

  let calls = 0;
  const out = await withRetry({ attempts: 4, baseDelayMs: 1, maxDelayMs: 2, budgetMs: 10_000 }, async () => {
    if (++calls < 3) throw new GRPCUnavailableError('down');
    return 'done';
  });
  assert.deepEqual(out, { value: 'done', ambiguous: true });
  assert.equal(calls, 3);

  calls = 0;
  await assert.rejects(
    withRetry({ attempts: 4, baseDelayMs: 1, maxDelayMs: 2, budgetMs: 10_000 }, async () => {
      calls++;
      throw new EtcdPermissionDeniedError('no');
    }),
    EtcdPermissionDeniedError,
  );
  assert.equal(calls, 1);

  calls = 0;
  await assert.rejects(
    withRetry({ attempts: 3, baseDelayMs: 1, maxDelayMs: 2, budgetMs: 10_000 }, async () => {
      calls++;
      throw new GRPCDeadlineExceededError('slow');
    }),
    GRPCDeadlineExceededError,
  );
  assert.equal(calls, 3);
});

test('no retry starts after the time budget', async () => {
  let calls = 0;
  const t0 = Date.now();
  await assert.rejects(
    withRetry({ attempts: 100, baseDelayMs: 40, maxDelayMs: 40, budgetMs: 150 }, async () => {
      calls++;
      throw new GRPCUnavailableError('down');
    }),
    GRPCUnavailableError,
  );
  assert.ok(calls >= 2 && calls <= 8, `calls ${calls}`);
  assert.ok(Date.now() - t0 < 1_000);
});

test('endpoints get a scheme matching TLS', () => {
  assert.deepEqual(normaliseEndpoints(['127.0.0.1:2379', 'http://a:1'], false), ['http://127.0.0.1:2379', 'http://a:1']);
  assert.deepEqual(normaliseEndpoints(['etcd:2379'], true), ['https://etcd:2379']);
  assert.throws(() => normaliseEndpoints([], false));
});
