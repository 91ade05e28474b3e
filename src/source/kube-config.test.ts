import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HttpMethod, KubeConfig, RequestContext } from '@kubernetes/client-node';
import { SharedConnectionKubeConfig } from './kube-config.ts';

// Dispatchers are only built here, never connected: no server is needed.
function load<T extends KubeConfig>(kc: T, certData: string, proxyUrl?: string): T {
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: 'https://127.0.0.1:6443', caData: Buffer.from('ca').toString('base64'), ...(proxyUrl === undefined ? {} : { proxyUrl }) }],
    users: [{ name: 'u', certData: Buffer.from(certData).toString('base64'), keyData: Buffer.from('key').toString('base64') }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  return kc;
}

async function dispatcherOf(kc: KubeConfig, url = 'https://127.0.0.1:6443/api/v1/pods'): Promise<unknown> {
  const ctx = new RequestContext(url, HttpMethod.GET);
  await kc.applySecurityAuthentication(ctx);
  return ctx.getDispatcher();
}

test('client-node alone builds a new dispatcher (so a new TLS connection) per request', async () => {
  const kc = load(new KubeConfig(), 'cert');
  const [a, b] = [await dispatcherOf(kc), await dispatcherOf(kc)];
  assert.ok(a !== undefined && b !== undefined);
  assert.notEqual(a, b);
});

test('every request of a SharedConnectionKubeConfig uses the same dispatcher', async () => {
  const kc = load(new SharedConnectionKubeConfig(), 'cert');
  const first = await dispatcherOf(kc);
  assert.ok(first !== undefined);
  const concurrent = await Promise.all(Array.from({ length: 5 }, () => dispatcherOf(kc)));
  for (const d of concurrent) assert.equal(d, first);
});

test('new TLS material gets a new dispatcher, which is then shared', async () => {
  const kc = load(new SharedConnectionKubeConfig(), 'cert-1');
  const before = await dispatcherOf(kc);
  load(kc, 'cert-2');
  const after = await dispatcherOf(kc);
  assert.notEqual(after, before);
  assert.equal(await dispatcherOf(kc), after);
});

test('a proxied cluster keeps client-node behaviour', async () => {
  const kc = load(new SharedConnectionKubeConfig(), 'cert', 'http://127.0.0.1:3128');
  assert.notEqual(await dispatcherOf(kc), await dispatcherOf(kc));
});

test('a rewritten certificate file gets a new dispatcher', async () => {
  const { mkdtemp, writeFile, rm } = await import('node:fs/promises');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const dir = await mkdtemp(join(tmpdir(), 'kube-config-'));
  try {
    const certFile = join(dir, 'client.crt');
    await writeFile(certFile, 'cert-1');
    const kc = new SharedConnectionKubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'c', server: 'https://127.0.0.1:6443', caData: Buffer.from('ca').toString('base64') }],
      users: [{ name: 'u', certFile, keyData: Buffer.from('key').toString('base64') }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x',
    });
    const before = await dispatcherOf(kc);
    assert.equal(await dispatcherOf(kc), before);
    await writeFile(certFile, 'cert-2, longer');
    assert.notEqual(await dispatcherOf(kc), before);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a watch gets a connection of its own, apart from the shared pool', async () => {
  const kc = load(new SharedConnectionKubeConfig(), 'cert');
  const shared = await dispatcherOf(kc);
  const watchUrl = 'https://127.0.0.1:6443/api/v1/namespaces/a/pods?watch=true&resourceVersion=5';
  const [w1, w2] = [await dispatcherOf(kc, watchUrl), await dispatcherOf(kc, watchUrl)];
  assert.ok(w1 !== undefined && w2 !== undefined);
  assert.notEqual(w1, shared);
  assert.notEqual(w1, w2);
  assert.equal(await dispatcherOf(kc), shared);
});
