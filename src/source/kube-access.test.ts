// The direct path to the API server (DirectAccess): what each request carries, which connection
// pool it uses, token files re-read as they rotate, and the TLS options as a local HTTPS server
// sees them (certificates from test/cluster/pki.ts). Real files in a temp dir throughout.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { describe, it, type TestContext } from 'node:test';
import { makeClusterPki, type ClusterPki } from '../../test/cluster/pki.ts';
import { apiEventSender } from '../events/event-api.ts';
import { DirectAccess, TOKEN_FILE_TTL_MS, USER_AGENT } from './kube-access.ts';
import { resolveKubeAccess } from './kube-access-resolve.ts';
import { KubeHttpError, listPage, statusCodeOf, watchStream } from './kube-http.ts';
import type { DirectConfig } from './kubeconfig.ts';

/** Resolves once `check` holds (polled every 10 ms); fails with `what` after 10 s. */
async function waitFor(check: () => boolean, what: string): Promise<void> {
  const deadline = performance.now() + 10_000;
  while (!check()) {
    if (performance.now() > deadline) assert.fail(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'kube-access-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const base: DirectConfig = {
  server: 'https://127.0.0.1:6443',
  ca: { data: Buffer.from('not a real CA') },
  cert: undefined,
  key: undefined,
  insecureSkipTlsVerify: false,
  tlsServerName: undefined,
  token: undefined,
  tokenFile: undefined,
};

const url = new URL('https://127.0.0.1:6443/api/v1/pods');

describe('DirectAccess: headers', () => {
  it('an inline token is a Bearer Authorization; every request names the controller', async () => {
    const access = new DirectAccess({ ...base, token: 'abc' });
    assert.deepEqual((await access.request(url, { watch: false })).headers, { Authorization: 'Bearer abc', 'User-Agent': USER_AGENT });
    const anonymous = new DirectAccess(base);
    assert.deepEqual((await anonymous.request(url, { watch: false })).headers, { 'User-Agent': USER_AGENT });
  });

  it('a token file is read at once (trimmed) and re-read when the value in hand is older than a minute', async (t) => {
    const dir = tempDir(t);
    const tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, 'token-1\n');
    let now = 1_000;
    const access = new DirectAccess({ ...base, token: 'inline', tokenFile }, { now: () => now });
    const auth = async (): Promise<string | undefined> => (await access.request(url, { watch: false })).headers['Authorization'];
    assert.equal(await auth(), 'Bearer token-1', 'the file wins over the inline token (client-go)');
    writeFileSync(tokenFile, 'token-2\n');
    now += TOKEN_FILE_TTL_MS;
    assert.equal(await auth(), 'Bearer token-1', 'not before a minute has passed');
    now += 1;
    assert.equal(await auth(), 'Bearer token-2');
    // A token file gone (mid-rotation): the last value read stays.
    unlinkSync(tokenFile);
    now += TOKEN_FILE_TTL_MS + 1;
    assert.equal(await auth(), 'Bearer token-2');
    writeFileSync(tokenFile, 'token-3');
    now += TOKEN_FILE_TTL_MS + 1;
    assert.equal(await auth(), 'Bearer token-3');
  });

  it('a token, CA or certificate file that cannot be read is an error at start, not per request', (t) => {
    const dir = tempDir(t);
    assert.throws(() => new DirectAccess({ ...base, tokenFile: join(dir, 'missing-token') }), { code: 'ENOENT' });
    assert.throws(() => new DirectAccess({ ...base, ca: { file: join(dir, 'missing-ca.crt') } }), { code: 'ENOENT' });
  });
});

describe('DirectAccess: connections', () => {
  it('lists and Event POSTs share one agent; each watch gets one of its own', async () => {
    const access = new DirectAccess({ ...base, token: 't' });
    const first = await access.request(url, { watch: false });
    const concurrent = await Promise.all(Array.from({ length: 5 }, () => access.request(url, { watch: false })));
    for (const r of concurrent) assert.equal(r.agent, first.agent);
    const [w1, w2] = [await access.request(url, { watch: true }), await access.request(url, { watch: true })];
    assert.notEqual(w1.agent, first.agent);
    assert.notEqual(w1.agent, w2.agent);
    assert.ok(w1.agent instanceof HttpsAgent, 'an https server: TLS connections');
    assert.equal((w1.agent as HttpsAgent).options.ca?.toString(), 'not a real CA', 'a watch has the same TLS material');
    w1.done();
    w2.done();
    await access.close();
  });

  it('a rewritten certificate file gets a new shared agent with the new material', async (t) => {
    const dir = tempDir(t);
    const cert = join(dir, 'client.crt');
    const key = join(dir, 'client.key');
    writeFileSync(cert, 'cert-1');
    writeFileSync(key, 'key-1');
    const access = new DirectAccess({ ...base, cert: { file: cert }, key: { file: key } });
    const before = (await access.request(url, { watch: false })).agent;
    assert.equal((await access.request(url, { watch: false })).agent, before);
    writeFileSync(cert, 'cert-2, longer');
    const after = (await access.request(url, { watch: false })).agent;
    assert.notEqual(after, before);
    assert.equal((after as HttpsAgent).options.cert?.toString(), 'cert-2, longer');
    assert.equal((await access.request(url, { watch: false })).agent, after);
    assert.equal(((await access.request(url, { watch: true })).agent as HttpsAgent).options.cert?.toString(), 'cert-2, longer');
  });

  it('an http:// server gets plain connections', async () => {
    const access = new DirectAccess({ ...base, ca: undefined, server: 'http://127.0.0.1:8080' });
    const made = await access.request(new URL('http://127.0.0.1:8080/api/v1/pods'), { watch: false });
    assert.ok(!(made.agent instanceof HttpsAgent));
  });
});

describe('DirectAccess against a local HTTPS server', () => {
  /** An HTTPS server asking for client certificates; records what each request carried. */
  async function serve(t: TestContext, pki: ClusterPki, answer: (req: IncomingMessage) => [number, string] | Promise<[number, string]>) {
    const seen: { method: string; url: string; headers: IncomingMessage['headers']; clientCN: unknown; body: string; connection: number }[] = [];
    /** Per connection the server accepted: whether it has closed. */
    const connections: { closed: boolean }[] = [];
    const server = createServer({ cert: await readFile(pki.apiServer.cert), key: await readFile(pki.apiServer.key), ca: await readFile(pki.ca.cert), requestCert: true, rejectUnauthorized: false }, (req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString()));
      req.on('end', async () => {
        const peer = (req.socket as TLSSocket).getPeerCertificate();
        seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, clientCN: peer.subject?.CN, body, connection: (req.socket as TLSSocket & { id: number }).id });
        const [status, text] = await answer(req);
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(text);
      });
    });
    // Node closes idle connections after 5 s by default; here only the client closes them.
    server.keepAliveTimeout = 60_000;
    server.on('secureConnection', (socket: TLSSocket & { id?: number }) => {
      const connection = { closed: false };
      socket.id = connections.push(connection) - 1;
      socket.on('close', () => (connection.closed = true));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.after(() => {
      server.closeAllConnections();
      server.close();
    });
    return { seen, connections, port: (server.address() as AddressInfo).port };
  }

  it('a kubeconfig with relative CA, client certificate and token file: what the server receives', async (t) => {
    const dir = tempDir(t);
    const pki = await makeClusterPki(dir);
    const { seen, port } = await serve(t, pki, () => [200, '{"items":[],"metadata":{"resourceVersion":"7"}}']);
    writeFileSync(join(dir, 'token'), 'sa-token\n');
    const path = join(dir, 'kubeconfig');
    const rel = (p: string): string => relative(dir, p);
    writeFileSync(path, [
      'apiVersion: v1', 'kind: Config', 'current-context: x',
      'clusters:', '- name: c', '  cluster:', `    server: https://127.0.0.1:${port}`, `    certificate-authority: ${rel(pki.ca.cert)}`, '    tls-server-name: localhost',
      'users:', '- name: u', '  user:', `    client-certificate: ${rel(pki.admin.cert)}`, `    client-key: ${rel(pki.admin.key)}`, '    tokenFile: token',
      'contexts:', '- name: x', '  context: {cluster: c, user: u}', '',
    ].join('\n'));
    const resolved = await resolveKubeAccess({ kubeconfig: path, env: {} });
    assert.equal(resolved.path, 'direct');
    assert.equal(resolved.origin, `kubeconfig ${path} (context x)`);
    const page = await listPage(resolved.access, '/api/v1/pods', { limit: 5, continueToken: undefined });
    assert.equal(page.resourceVersion, '7');
    assert.equal(seen.length, 1);
    assert.equal(seen[0]?.url, '/api/v1/pods?limit=5');
    assert.equal(seen[0]?.headers['authorization'], 'Bearer sa-token');
    assert.equal(seen[0]?.headers['user-agent'], USER_AGENT);
    assert.equal(seen[0]?.headers['accept'], 'application/json');
    assert.equal(seen[0]?.clientCN, 'admin', 'the client certificate was presented');
    await resolved.access.close();
  });

  it('connections: lists reuse one; a watch has its own, closed when it ends; a rotated certificate\'s old pool closes after its requests', async (t) => {
    const dir = tempDir(t);
    const pki = await makeClusterPki(dir);
    /** A request to ?hold waits for release(). */
    let release = (): void => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    const answer = '{"items":[],"metadata":{"resourceVersion":"1"}}';
    const { seen, connections, port } = await serve(t, pki, async (req) => {
      if ((req.url ?? '').includes('hold')) await held;
      return [200, answer];
    });
    const cert = join(dir, 'client.crt');
    writeFileSync(cert, await readFile(pki.admin.cert));
    const access = new DirectAccess({ ...base, server: `https://127.0.0.1:${port}`, ca: { file: pki.ca.cert }, cert: { file: cert }, key: { file: pki.admin.key } });
    const list = (labelSelector?: string): Promise<unknown> => listPage(access, '/api/v1/pods', { limit: 1, continueToken: undefined, labelSelector });
    await list();
    await list();
    assert.deepEqual(seen.map((r) => r.connection), [0, 0], 'the second list reused the first connection');
    await new Promise<void>((resolve, reject) => {
      void watchStream(access, '/api/v1/pods', { resourceVersion: '1', timeoutSeconds: 60, inactivityMs: 10_000 }, () => undefined, (err) => (err === null ? resolve() : reject(err as Error)));
    });
    assert.equal(seen.at(-1)?.connection, 1, 'the watch had a connection of its own');
    await waitFor(() => connections[1]?.closed === true, 'the watch\'s connection closed when the watch ended');
    assert.equal(connections[0]?.closed, false, 'the shared connection stays open');
    // A list in flight on the shared connection, then a rotated client certificate (the same one
    // rewritten: a new file identity).
    const inFlight = list('hold');
    await waitFor(() => connections.length === 2 && seen.length === 3, 'the held list reached the server');
    writeFileSync(cert, await readFile(pki.admin.cert));
    await list();
    assert.equal(seen.at(-1)?.connection, 2, 'new material, a new connection');
    assert.equal(connections[0]?.closed, false, 'the old pool\'s connection stays while its request runs');
    release();
    await inFlight;
    await waitFor(() => connections[0]?.closed === true, 'the old pool\'s connection closed once its request finished');
    assert.equal(connections[2]?.closed, false);
    await access.close();
    await waitFor(() => connections[2]?.closed === true, 'close() closes the idle shared connection');
  });

  it('tls-server-name is the name the server certificate is checked against', async (t) => {
    const dir = tempDir(t);
    const pki = await makeClusterPki(dir);
    const { port } = await serve(t, pki, () => [200, '{"items":[],"metadata":{"resourceVersion":"1"}}']);
    const config = { ...base, server: `https://127.0.0.1:${port}`, ca: { file: pki.ca.cert } };
    await listPage(new DirectAccess({ ...config, tlsServerName: 'localhost' }), '/api/v1/pods', { limit: 1, continueToken: undefined });
    await assert.rejects(listPage(new DirectAccess({ ...config, tlsServerName: 'elsewhere.invalid' }), '/api/v1/pods', { limit: 1, continueToken: undefined }), /elsewhere\.invalid/);
    // insecure-skip-tls-verify: no CA needed.
    await listPage(new DirectAccess({ ...base, ca: undefined, server: `https://127.0.0.1:${port}`, insecureSkipTlsVerify: true }), '/api/v1/pods', { limit: 1, continueToken: undefined });
  });

  it('an Event POST: path, JSON body with a MicroTime, and a non-2xx answer as an error with its code', async (t) => {
    const dir = tempDir(t);
    const pki = await makeClusterPki(dir);
    let status = 201;
    const { seen, port } = await serve(t, pki, () => status === 201 ? [201, '{}'] : [403, '{"kind":"Status","code":403,"message":"events.events.k8s.io is forbidden"}']);
    const send = apiEventSender(new DirectAccess({ ...base, server: `https://127.0.0.1:${port}`, ca: { file: pki.ca.cert }, token: 'tok' }), { reportingInstance: 'r-0' });
    const event = { pod: { namespace: 'shop', name: 'web-1', uid: 'u-1' }, type: 'Normal' as const, reason: 'Registered', action: 'Register', note: 'n', time: Date.UTC(2026, 11, 3, 7, 21, 30, 855) };
    await send(event);
    assert.equal(seen[0]?.method, 'POST');
    assert.equal(seen[0]?.url, '/apis/events.k8s.io/v1/namespaces/shop/events');
    assert.equal(seen[0]?.headers['content-type'], 'application/json');
    assert.equal(seen[0]?.headers['authorization'], 'Bearer tok');
    const body = JSON.parse(seen[0]?.body ?? '') as { eventTime: string; regarding: { uid: string }; reportingInstance: string };
    assert.equal(body.eventTime, '2026-12-03T07:21:30.855000Z');
    assert.equal(body.regarding.uid, 'u-1');
    assert.equal(body.reportingInstance, 'r-0');
    status = 403;
    const err = await send(event).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof KubeHttpError);
    assert.equal(err.code, 403, 'the recorder logs `code`, as it did with client-node');
    assert.equal(statusCodeOf(err), 403);
    assert.equal(err.message, 'events.events.k8s.io is forbidden');
  });
});
