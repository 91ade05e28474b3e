// The client-node fallback behind KubeAccess: which configurations take it (and say why), what
// its requests carry, its connection sharing, and that the common configurations never load
// @kubernetes/client-node at all. Agents are only built here, never connected.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { Agent as HttpsAgent } from 'node:https';
import { describe, it, type TestContext } from 'node:test';
import { ClientNodeAccess, loadClientNode, sharedConnectionKubeConfig } from './kube-access-client-node.ts';
import { resolveKubeAccess } from './kube-access-resolve.ts';
import { USER_AGENT } from './kube-access.ts';

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'kube-access-cn-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const url = new URL('https://127.0.0.1:6443/api/v1/pods');
const watchUrl = new URL('https://127.0.0.1:6443/api/v1/namespaces/a/pods?watch=true&resourceVersion=5');

async function access(certData: string, proxyUrl?: string): Promise<ClientNodeAccess> {
  const module = await loadClientNode();
  const kc = new module.KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: 'https://127.0.0.1:6443/', caData: Buffer.from('ca').toString('base64'), ...(proxyUrl === undefined ? {} : { proxyUrl }) }],
    users: [{ name: 'u', certData: Buffer.from(certData).toString('base64'), keyData: Buffer.from('key').toString('base64') }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  return new ClientNodeAccess(kc);
}

describe('ClientNodeAccess: connections (client-node alone opens a connection per request)', () => {
  it('every request shares one agent with client-node\'s TLS material; the server has no trailing slash', async () => {
    const a = await access('cert');
    assert.equal(a.server, 'https://127.0.0.1:6443');
    const first = await a.request(url, { watch: false });
    const concurrent = await Promise.all(Array.from({ length: 5 }, () => a.request(url, { watch: false })));
    for (const r of concurrent) assert.equal(r.agent, first.agent);
    assert.equal(first.headers['User-Agent'], USER_AGENT);
    assert.ok(first.agent instanceof HttpsAgent);
    assert.equal(first.agent.options.cert?.toString(), 'cert');
    assert.equal(first.agent.options.ca?.toString(), 'ca');
  });

  it('a watch gets a connection of its own, apart from the shared pool', async () => {
    const a = await access('cert');
    const shared = (await a.request(url, { watch: false })).agent;
    const [w1, w2] = [await a.request(watchUrl, { watch: true }), await a.request(watchUrl, { watch: true })];
    assert.notEqual(w1.agent, shared);
    assert.notEqual(w1.agent, w2.agent);
    w1.done();
    w2.done();
    assert.equal((await a.request(url, { watch: false })).agent, shared);
  });

  it('a proxied cluster goes through client-node\'s proxy agent', async () => {
    const a = await access('cert', 'http://127.0.0.1:3128');
    const made = await a.request(url, { watch: false });
    assert.match(made.agent.constructor.name, /Proxy/);
    assert.equal((await a.request(url, { watch: true })).agent, made.agent);
  });

  it('basic auth becomes an Authorization header', async () => {
    const module = await loadClientNode();
    const kc = new module.KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'c', server: 'https://127.0.0.1:6443', skipTLSVerify: true }],
      users: [{ name: 'u', username: 'admin', password: 'secret' }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x',
    });
    const made = await new ClientNodeAccess(kc).request(url, { watch: false });
    assert.equal(made.headers['Authorization'], `Basic ${Buffer.from('admin:secret').toString('base64')}`);
    assert.equal((made.agent as HttpsAgent).options.rejectUnauthorized, false);
  });

  it('a rewritten certificate file gets a new agent', async (t) => {
    const dir = tempDir(t);
    const certFile = join(dir, 'client.crt');
    writeFileSync(certFile, 'cert-1');
    const module = await loadClientNode();
    const kc = new module.KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'c', server: 'https://127.0.0.1:6443', caData: Buffer.from('ca').toString('base64') }],
      users: [{ name: 'u', certFile, keyData: Buffer.from('key').toString('base64') }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x',
    });
    const a = new ClientNodeAccess(kc);
    const before = (await a.request(url, { watch: false })).agent;
    assert.equal((await a.request(url, { watch: false })).agent, before);
    writeFileSync(certFile, 'cert-2, longer');
    const after = (await a.request(url, { watch: false })).agent;
    assert.notEqual(after, before);
    assert.equal((after as HttpsAgent).options.cert?.toString(), 'cert-2, longer');
  });

  it('sharedConnectionKubeConfig: client-node typed API calls share the pool too', async () => {
    const kc = await sharedConnectionKubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'c', server: 'https://127.0.0.1:6443', caData: Buffer.from('ca').toString('base64') }],
      users: [{ name: 'u', token: 't' }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x',
    });
    const { RequestContext, HttpMethod } = await loadClientNode();
    const dispatcherOf = async (): Promise<unknown> => {
      const ctx = new RequestContext(url.toString(), HttpMethod.GET);
      await kc.applySecurityAuthentication(ctx);
      return ctx.getDispatcher();
    };
    assert.equal(await dispatcherOf(), await dispatcherOf());
  });
});

describe('resolveKubeAccess: the fallback, and why', () => {
  const cluster = (dir: string): string[] => ['clusters:', '- name: c', '  cluster:', '    server: https://10.0.0.1:6443', '    insecure-skip-tls-verify: true', `    certificate-authority: ${join(dir, 'unused')}`];

  it('an impersonating user: client-node, with its headers', async (t) => {
    const dir = tempDir(t);
    const path = join(dir, 'config');
    writeFileSync(path, ['current-context: x', ...cluster(dir).slice(0, 4), 'users:', '- name: u', '  user:', '    token: tok', '    as: someone', 'contexts:', '- name: x', '  context: {cluster: c, user: u}', ''].join('\n'));
    const resolved = await resolveKubeAccess({ kubeconfig: path, env: {} });
    assert.equal(resolved.path, 'client-node');
    assert.equal(resolved.reason, 'user "u" impersonates (as)');
    const { headers } = await resolved.access.request(url, { watch: false });
    assert.equal(headers['Authorization'], 'Bearer tok');
    assert.equal(headers['Impersonate-User'], 'someone');
  });

  it('an exec user: client-node (the plugin runs only when a request is made)', async (t) => {
    const dir = tempDir(t);
    const path = join(dir, 'config');
    writeFileSync(path, ['current-context: x', ...cluster(dir).slice(0, 4), 'users:', '- name: u', '  user:', '    exec:', '      apiVersion: client.authentication.k8s.io/v1', '      command: /bin/false', 'contexts:', '- name: x', '  context: {cluster: c, user: u}', ''].join('\n'));
    const resolved = await resolveKubeAccess({ kubeconfig: path, env: {} });
    assert.deepEqual([resolved.path, resolved.reason, resolved.access.server], ['client-node', 'user "u" uses exec credentials', 'https://10.0.0.1:6443']);
  });

  it('$KUBECONFIG with several files: client-node merges them (context in one, cluster and user in the other)', async (t) => {
    const dir = tempDir(t);
    const a = join(dir, 'a');
    const b = join(dir, 'b');
    writeFileSync(a, ['current-context: x', 'contexts:', '- name: x', '  context: {cluster: c, user: u}', ''].join('\n'));
    writeFileSync(b, [...cluster(dir).slice(0, 4), 'users:', '- name: u', '  user: {token: merged}', ''].join('\n'));
    const resolved = await resolveKubeAccess({ env: { KUBECONFIG: [a, b].join(delimiter) } });
    assert.equal(resolved.path, 'client-node');
    assert.match(resolved.reason ?? '', /\$KUBECONFIG lists 2 files/);
    assert.equal((await resolved.access.request(url, { watch: false })).headers['Authorization'], 'Bearer merged');
  });

  it('no current context: client-node finds no cluster either, which is the one clear error', async (t) => {
    const dir = tempDir(t);
    const path = join(dir, 'config');
    writeFileSync(path, [...cluster(dir).slice(0, 4), ''].join('\n'));
    await assert.rejects(resolveKubeAccess({ kubeconfig: path, env: {} }), { name: 'NoClusterError' });
  });

  it('in-cluster and a token kubeconfig never load @kubernetes/client-node (nor undici, npm\'s or Node\'s own); a fallback does', (t) => {
    const dir = tempDir(t);
    const sa = join(dir, 'sa');
    const kubeconfig = join(dir, 'config');
    mkdirSync(sa);
    writeFileSync(join(sa, 'token'), 'tok');
    writeFileSync(join(sa, 'ca.crt'), '');
    writeFileSync(kubeconfig, ['current-context: x', ...cluster(dir).slice(0, 4), 'users:', '- name: u', '  user: {token: t}', 'contexts:', '- name: x', '  context: {cluster: c, user: u}', ''].join('\n'));
    const basic = join(dir, 'basic-config');
    writeFileSync(basic, ['current-context: x', ...cluster(dir).slice(0, 4), 'users:', '- name: u', '  user: {username: a, password: b}', 'contexts:', '- name: x', '  context: {cluster: c, user: u}', ''].join('\n'));
    const root = resolve(import.meta.dirname, '../..');
    // Records every module resolved while the CLI is loaded and the accesses are resolved.
    const script = `
      import { registerHooks } from 'node:module';
      const seen = [];
      registerHooks({ resolve(specifier, context, next) { const r = next(specifier, context); seen.push(r.url); return r; } });
      const loaded = () => seen.some((u) => u.includes('/@kubernetes/client-node/'));
      const undici = () => seen.some((u) => u.includes('/node_modules/undici/'));
      await import(${JSON.stringify(join(root, 'src/cli.ts'))});
      const { resolveKubeAccess } = await import(${JSON.stringify(join(root, 'src/source/kube-access-resolve.ts'))});
      const out = { cli: loaded() };
      out.inCluster = (await resolveKubeAccess({ env: { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' }, serviceAccountDir: ${JSON.stringify(sa)} })).path;
      out.token = (await resolveKubeAccess({ kubeconfig: ${JSON.stringify(kubeconfig)}, env: {} })).path;
      out.afterDirect = loaded();
      out.undiciAfterDirect = undici();
      // Node's bundled undici is what an ESM import of node:http pulls in (src/node-http.ts).
      await import(${JSON.stringify(join(root, 'src/wiring.ts'))});
      await import(${JSON.stringify(join(root, 'src/run.ts'))});
      out.nodeUndiciAfterDirect = process.moduleLoadList.includes('NativeModule internal/deps/undici/undici');
      out.basic = (await resolveKubeAccess({ kubeconfig: ${JSON.stringify(basic)}, env: {} })).path;
      out.afterFallback = loaded();
      process.stdout.write(JSON.stringify(out));
    `;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: root, encoding: 'utf8' });
    assert.deepEqual(JSON.parse(out), { cli: false, inCluster: 'direct', token: 'direct', afterDirect: false, undiciAfterDirect: false, nodeUndiciAfterDirect: false, basic: 'client-node', afterFallback: true });
  });
});
