// Which configuration applies and what a kubeconfig says, on real files in a temp dir: relative
// paths, -data fields, tokens, in-cluster, and every reason to fall back to client-node.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { inClusterConfig, kubeSourceOf, NoClusterError, parseKubeconfig, readKubeconfig, type DirectConfig } from './kubeconfig.ts';

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'kubeconfig-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A kubeconfig with one context "x" of cluster "c" and user "u", with these fields. */
function kubeconfig(cluster: Record<string, unknown>, user: Record<string, unknown> | undefined, extra = ''): string {
  const yaml = (o: Record<string, unknown>): string => Object.entries(o).map(([k, v]) => `    ${k}: ${JSON.stringify(v)}`).join('\n');
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '- name: c',
    '  cluster:',
    yaml({ server: 'https://10.0.0.1:6443/', ...cluster }),
    ...(user === undefined ? [] : ['users:', '- name: u', '  user:', yaml(user)]),
    'contexts:',
    '- name: x',
    '  context:',
    '    cluster: c',
    ...(user === undefined ? [] : ['    user: u']),
    'current-context: x',
    extra,
  ].join('\n');
}

function direct(text: string, baseDir = '/etc/kube'): DirectConfig {
  const parsed = parseKubeconfig(text, baseDir);
  assert.equal(parsed.kind, 'direct', parsed.kind === 'fallback' ? parsed.reason : '');
  return parsed.config;
}

function fallbackReason(text: string): string {
  const parsed = parseKubeconfig(text, '/etc/kube');
  assert.equal(parsed.kind, 'fallback');
  return parsed.reason;
}

describe('parseKubeconfig: the direct path', () => {
  it('a client certificate from files: relative paths resolve against the kubeconfig directory', (t) => {
    const dir = tempDir(t);
    const path = join(dir, 'admin.kubeconfig');
    writeFileSync(path, kubeconfig({ 'certificate-authority': 'pki/ca.crt' }, { 'client-certificate': 'pki/admin.crt', 'client-key': '/abs/admin.key' }));
    const parsed = readKubeconfig(path);
    assert.equal(parsed.kind, 'direct');
    assert.equal(parsed.context, 'x');
    assert.deepEqual(parsed.config, {
      server: 'https://10.0.0.1:6443',
      ca: { file: join(dir, 'pki/ca.crt') },
      cert: { file: join(dir, 'pki/admin.crt') },
      key: { file: '/abs/admin.key' },
      insecureSkipTlsVerify: false,
      tlsServerName: undefined,
      token: undefined,
      tokenFile: undefined,
    });
  });

  it('-data fields are base64 bytes; a file wins over data, as in client-node', () => {
    const b64 = (s: string): string => Buffer.from(s).toString('base64');
    const config = direct(kubeconfig(
      { 'certificate-authority-data': b64('CA PEM'), 'insecure-skip-tls-verify': true, 'tls-server-name': 'kubernetes.default' },
      { 'client-certificate-data': b64('CERT PEM'), 'client-key-data': b64('KEY PEM'), 'client-key': 'key.pem' },
    ));
    assert.deepEqual(config.ca, { data: Buffer.from('CA PEM') });
    assert.deepEqual(config.cert, { data: Buffer.from('CERT PEM') });
    assert.deepEqual(config.key, { file: '/etc/kube/key.pem' });
    assert.equal(config.insecureSkipTlsVerify, true);
    assert.equal(config.tlsServerName, 'kubernetes.default');
  });

  it('a bearer token inline, or a token file (client-go tokenFile, client-node token-file), resolved like the others', () => {
    assert.equal(direct(kubeconfig({}, { token: 'abc' })).token, 'abc');
    assert.equal(direct(kubeconfig({}, { tokenFile: 'sa/token' })).tokenFile, '/etc/kube/sa/token');
    assert.equal(direct(kubeconfig({}, { 'token-file': '/run/token' })).tokenFile, '/run/token');
    const both = direct(kubeconfig({}, { token: 'abc', tokenFile: 't' }));
    assert.deepEqual([both.token, both.tokenFile], ['abc', '/etc/kube/t']);
  });

  it('a context without a user is anonymous; an http server is allowed; extensions are ignored', () => {
    const config = direct(kubeconfig({ server: 'http://127.0.0.1:8001', extensions: [{ name: 'e', extension: {} }] }, undefined));
    assert.equal(config.server, 'http://127.0.0.1:8001');
    assert.deepEqual([config.token, config.tokenFile, config.cert, config.key], [undefined, undefined, undefined, undefined]);
  });

  it('a client certificate without its key is an error, not a silent anonymous user', () => {
    assert.throws(() => parseKubeconfig(kubeconfig({}, { 'client-certificate': 'c.crt' }), '/'), /client-certificate and client-key go together/);
  });

  it('YAML that cannot be parsed, or an empty file, is an error (as with client-node, which uses the same parser)', () => {
    assert.throws(() => parseKubeconfig('clusters: [unclosed', '/'));
    assert.throws(() => parseKubeconfig('', '/'), /input is empty/);
  });
});

describe('parseKubeconfig: every reason to fall back to client-node', () => {
  const cases: Array<[string, string, RegExp]> = [
    ['exec credentials', kubeconfig({}, { exec: { command: 'aws', apiVersion: 'client.authentication.k8s.io/v1' } }), /user "u" uses exec credentials/],
    ['an auth-provider', kubeconfig({}, { 'auth-provider': { name: 'oidc', config: {} } }), /user "u" uses an auth-provider/],
    ['basic auth', kubeconfig({}, { username: 'admin', password: 'secret' }), /user "u" uses basic authentication/],
    ['impersonation', kubeconfig({}, { token: 't', as: 'someone' }), /user "u" impersonates \(as\)/],
    ['impersonated groups', kubeconfig({}, { token: 't', 'as-groups': ['g'] }), /impersonates \(as-groups\)/],
    ['an unknown user field', kubeconfig({}, { 'some-future-auth': 'x' }), /user "u" has the field some-future-auth/],
    ['a proxy', kubeconfig({ 'proxy-url': 'socks5://127.0.0.1:1080' }, { token: 't' }), /cluster "c" uses proxy-url/],
    ['an unknown cluster field', kubeconfig({ 'some-future-option': true }, { token: 't' }), /cluster "c" has the field some-future-option/],
    ['a server that is not http(s)', kubeconfig({ server: 'unix:///run/k8s.sock' }, { token: 't' }), /has no http\(s\) server URL/],
    ['no current-context', kubeconfig({}, { token: 't' }).replace('current-context: x', ''), /^no current-context$/],
    ['a current-context naming no context', kubeconfig({}, { token: 't' }).replace('current-context: x', 'current-context: y'), /current-context "y" names no context/],
    ['a context naming an undefined cluster', kubeconfig({}, { token: 't' }).replace('    cluster: c', '    cluster: d'), /names cluster "d", which is not defined/],
    ['a context naming an undefined user', kubeconfig({}, { token: 't' }).replace('    user: u', '    user: v'), /names user "v", which is not defined/],
    ['a file with no context at all', 'apiVersion: v1\nkind: Config\n', /^no current-context$/],
  ];
  for (const [what, text, reason] of cases) {
    it(what, () => assert.match(fallbackReason(text), reason));
  }
});

describe('kubeSourceOf: client-node loadFromDefault order', () => {
  function setup(t: TestContext): { dir: string; home: string; sa: string } {
    const dir = tempDir(t);
    const home = join(dir, 'home');
    const sa = join(dir, 'sa');
    mkdirSync(join(home, '.kube'), { recursive: true });
    mkdirSync(sa);
    return { dir, home, sa };
  }

  it('the --kubeconfig flag first, even with $KUBECONFIG set', (t) => {
    const { home, sa } = setup(t);
    assert.deepEqual(kubeSourceOf({ kubeconfig: '/a', env: { KUBECONFIG: '/b', HOME: home }, serviceAccountDir: sa }), { kind: 'file', path: '/a', via: 'flag' });
  });

  it('then $KUBECONFIG: one file, or several (merged by client-node); empty entries skipped', (t) => {
    const { home, sa } = setup(t);
    assert.deepEqual(kubeSourceOf({ env: { KUBECONFIG: '/b', HOME: home }, serviceAccountDir: sa }), { kind: 'file', path: '/b', via: 'KUBECONFIG' });
    assert.deepEqual(kubeSourceOf({ env: { KUBECONFIG: ':/b:', HOME: home }, serviceAccountDir: sa }), { kind: 'file', path: '/b', via: 'KUBECONFIG' });
    assert.deepEqual(kubeSourceOf({ env: { KUBECONFIG: '/b:/c' }, serviceAccountDir: sa }), { kind: 'files', paths: ['/b', '/c'] });
  });

  it('then ~/.kube/config if it exists, then in-cluster if the token is mounted, else NoClusterError', (t) => {
    const { home, sa } = setup(t);
    const env = { HOME: home, KUBECONFIG: '' };
    assert.throws(() => kubeSourceOf({ env, serviceAccountDir: sa }), NoClusterError);
    writeFileSync(join(sa, 'token'), 'tok');
    assert.deepEqual(kubeSourceOf({ env, serviceAccountDir: sa }), { kind: 'in-cluster', serviceAccountDir: sa });
    writeFileSync(join(home, '.kube', 'config'), '');
    assert.deepEqual(kubeSourceOf({ env, serviceAccountDir: sa }), { kind: 'file', path: join(home, '.kube', 'config'), via: 'home' });
    // No (or an inaccessible) $HOME: straight to in-cluster.
    assert.deepEqual(kubeSourceOf({ env: { HOME: join(home, 'gone') }, serviceAccountDir: sa }), { kind: 'in-cluster', serviceAccountDir: sa });
  });
});

describe('inClusterConfig', () => {
  it('the service address from the environment, the mounted token file and CA', () => {
    assert.deepEqual(inClusterConfig({ KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' }, '/sa'), {
      server: 'https://10.96.0.1:443',
      ca: { file: '/sa/ca.crt' },
      cert: undefined,
      key: undefined,
      insecureSkipTlsVerify: false,
      tlsServerName: undefined,
      token: undefined,
      tokenFile: '/sa/token',
    });
  });

  it('IPv6 in brackets; plain http on ports 80, 8080 and 8001 (as client-node)', () => {
    assert.equal(inClusterConfig({ KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '443' }, '/sa').server, 'https://[fd00::1]:443');
    assert.equal(inClusterConfig({ KUBERNETES_SERVICE_HOST: 'api', KUBERNETES_SERVICE_PORT: '8080' }, '/sa').server, 'http://api:8080');
  });

  it('a mounted token without the service environment is an error naming both', () => {
    assert.throws(() => inClusterConfig({ KUBERNETES_SERVICE_HOST: '10.96.0.1' }, '/sa'), /KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set/);
  });
});
