// Which HTTP version kube-http's requests use, against a local TLS server that speaks both
// (certificates from test/cluster/pki.ts): HTTP/1.1 throughout, which Node's client speaks.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createSecureServer } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { makeClusterPki } from '../../test/cluster/pki.ts';
import { DirectAccess } from './kube-access.ts';
import { listPage, watchStream } from './kube-http.ts';

test('lists and watches go over HTTP/1.1 even where the server offers HTTP/2', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'kube-http-protocol-'));
  const pki = await makeClusterPki(dir);
  const seen: string[] = [];
  const server = createSecureServer({ cert: await readFile(pki.apiServer.cert), key: await readFile(pki.apiServer.key), allowHTTP1: true }, (req, res) => {
    const watch = (req.url ?? '').includes('watch=true');
    seen.push(`${watch ? 'watch' : 'list'} ${req.httpVersion}`);
    res.writeHead(200, { 'content-type': 'application/json' });
    if (watch) res.end('{"type":"ADDED","object":{"metadata":{"name":"p","resourceVersion":"2"}}}\n');
    else res.end('{"items":[],"metadata":{"resourceVersion":"1"}}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const kc = new DirectAccess({
      server: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
      ca: { file: pki.ca.cert },
      cert: { file: pki.admin.cert },
      key: { file: pki.admin.key },
      insecureSkipTlsVerify: false,
      tlsServerName: undefined,
      token: undefined,
      tokenFile: undefined,
    });
    assert.equal((await listPage(kc, '/api/v1/pods', { limit: 1, continueToken: undefined })).resourceVersion, '1');
    const events: string[] = [];
    await new Promise<void>((resolve, reject) => {
      void watchStream(kc, '/api/v1/pods', { resourceVersion: '1', timeoutSeconds: 60, inactivityMs: 10_000 }, (type) => events.push(type), (err) => (err === null ? resolve() : reject(err as Error)));
    });
    assert.deepEqual(events, ['ADDED']);
    assert.deepEqual(seen, ['list 1.1', 'watch 1.1']);
  } finally {
    server.close();
    await rm(dir, { recursive: true, force: true });
  }
});
