// Certificates, keys and kubeconfigs for the test cluster, made with the openssl CLI.
import { execFile } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface KeyPair {
  cert: string;
  key: string;
}

export interface ClusterPki {
  ca: KeyPair;
  apiServer: KeyPair;
  admin: KeyPair;
  controllerManager: KeyPair;
  scheduler: KeyPair;
  /** ServiceAccount token signing key and its public half. */
  serviceAccountKey: string;
  serviceAccountPub: string;
}

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
const DAYS = ['-days', '3650'];

async function openssl(args: string[]): Promise<void> {
  try {
    await run('openssl', args);
  } catch (err) {
    const e = err as { code?: unknown; stderr?: string };
    if (e.code === 'ENOENT') throw new Error('openssl not found on PATH: it is needed to make test certificates');
    throw new Error(`openssl ${args[0]} failed: ${e.stderr?.trim() ?? String(err)}`);
  }
}

/** A self-signed CA as DIR/NAME.crt and DIR/NAME.key. */
export async function makeCa(dir: string, name = 'ca', commonName = 'etcd-registrar-test-ca'): Promise<KeyPair> {
  const pair = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
  await openssl([
    'req', '-x509', '-new', ...EC_KEY, ...DAYS, '-keyout', pair.key, '-out', pair.cert,
    '-subj', `/CN=${commonName}`,
    '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  return pair;
}

async function makeLeaf(
  dir: string,
  name: string,
  ca: KeyPair,
  subject: string,
  usage: 'serverAuth' | 'clientAuth',
  altNames?: string,
): Promise<KeyPair> {
  const pair = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
  await openssl([
    'req', '-x509', '-new', ...EC_KEY, ...DAYS, '-keyout', pair.key, '-out', pair.cert,
    '-subj', subject, '-CA', ca.cert, '-CAkey', ca.key,
    '-addext', 'basicConstraints=critical,CA:FALSE',
    '-addext', 'keyUsage=critical,digitalSignature',
    '-addext', `extendedKeyUsage=${usage}`,
    ...(altNames === undefined ? [] : ['-addext', `subjectAltName=${altNames}`]),
  ]);
  return pair;
}

export async function makeClusterPki(dir: string): Promise<ClusterPki> {
  const ca = await makeCa(dir);
  const serviceAccountKey = join(dir, 'sa.key');
  const serviceAccountPub = join(dir, 'sa.pub');
  const [apiServer, admin, controllerManager, scheduler] = await Promise.all([
    makeLeaf(dir, 'apiserver', ca, '/CN=kube-apiserver', 'serverAuth', 'IP:127.0.0.1,DNS:localhost'),
    makeLeaf(dir, 'admin', ca, '/O=system:masters/CN=admin', 'clientAuth'),
    // The identities kubeadm uses, so the built-in RBAC roles apply as in a real cluster.
    makeLeaf(dir, 'controller-manager', ca, '/CN=system:kube-controller-manager', 'clientAuth'),
    makeLeaf(dir, 'scheduler', ca, '/CN=system:kube-scheduler', 'clientAuth'),
    openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', serviceAccountKey]).then(
      () => openssl(['pkey', '-in', serviceAccountKey, '-pubout', '-out', serviceAccountPub]),
    ),
  ]);
  return { ca, apiServer, admin, controllerManager, scheduler, serviceAccountKey, serviceAccountPub };
}

export interface RegistryPki {
  /** The registry etcd's own CA (not the API server's). */
  ca: KeyPair;
  /** etcd's serving certificate, for IP 127.0.0.1 and DNS localhost. */
  server: KeyPair;
  /**
   * The controller's client certificate. Its CN (REGISTRY_CLIENT_CN) is no etcd user, so
   * with etcd auth on, the certificate alone grants nothing: rights come from the password.
   */
  client: KeyPair;
}

/** CN of RegistryPki.client; deliberately not an etcd user name. */
export const REGISTRY_CLIENT_CN = 'etcd-registrar-client';

/** CA, server and client certificates of a TLS registry etcd, in DIR. */
export async function makeRegistryPki(dir: string): Promise<RegistryPki> {
  await mkdir(dir, { recursive: true });
  const ca = await makeCa(dir, 'ca', 'etcd-registrar-registry-ca');
  const [server, client] = await Promise.all([
    makeLeaf(dir, 'server', ca, '/CN=registry-etcd', 'serverAuth', 'IP:127.0.0.1,DNS:localhost'),
    makeLeaf(dir, 'client', ca, `/CN=${REGISTRY_CLIENT_CN}`, 'clientAuth'),
  ]);
  return { ca, server, client };
}

export interface ClientCertOptions {
  /** Subject common name; etcd maps it to a user when a request carries no token. */
  commonName: string;
  /** Issue a certificate whose validity ended yesterday. */
  expired?: boolean;
}

/**
 * A client certificate DIR/NAME.crt (+ .key) signed by `ca`, for negative tests: pass
 * `expired: true`, or a CA from makeCa() that the server does not trust.
 */
export async function issueClientCert(
  dir: string,
  name: string,
  ca: KeyPair,
  opts: ClientCertOptions,
): Promise<KeyPair> {
  const subject = `/CN=${opts.commonName}`;
  if (opts.expired !== true) return makeLeaf(dir, name, ca, subject, 'clientAuth');
  // `openssl ca` is the one 3.0 command that takes explicit validity dates.
  const pair = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
  const work = join(dir, `${name}.ca-work`);
  await mkdir(work, { recursive: true });
  const csr = join(work, 'req.csr');
  const config = join(work, 'ca.cnf');
  await Promise.all([
    writeFile(join(work, 'index.txt'), ''),
    writeFile(join(work, 'serial'), `${Date.now().toString(16).padStart(16, '0')}\n`),
    writeFile(
      config,
      `[ca]\ndefault_ca = test\n[test]\ndatabase = ${join(work, 'index.txt')}\nnew_certs_dir = ${work}\n` +
        `serial = ${join(work, 'serial')}\ndefault_md = sha256\npolicy = any\nunique_subject = no\ncopy_extensions = none\n` +
        `[any]\ncommonName = supplied\n[ext]\nbasicConstraints = critical,CA:FALSE\n` +
        `keyUsage = critical,digitalSignature\nextendedKeyUsage = clientAuth\n`,
    ),
    openssl(['req', '-new', ...EC_KEY, '-keyout', pair.key, '-out', csr, '-subj', subject]),
  ]);
  const day = 24 * 3600 * 1000;
  await openssl([
    'ca', '-batch', '-config', config, '-extensions', 'ext', '-notext',
    '-cert', ca.cert, '-keyfile', ca.key, '-in', csr, '-out', pair.cert,
    '-startdate', opensslDate(Date.now() - 2 * day), '-enddate', opensslDate(Date.now() - day),
  ]);
  await rm(work, { recursive: true, force: true });
  return pair;
}

/** YYYYMMDDHHMMSSZ, the GeneralizedTime form `openssl ca -startdate/-enddate` accept. */
function opensslDate(ms: number): string {
  return `${new Date(ms).toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;
}

export type Credentials = { clientCert: KeyPair } | { token: string };

/** Writes a kubeconfig with one cluster/user/context named after `user`. */
export async function writeKubeconfig(
  path: string,
  server: string,
  caPath: string,
  user: string,
  credentials: Credentials,
): Promise<string> {
  const userFields =
    'token' in credentials
      ? `    token: ${JSON.stringify(credentials.token)}`
      : `    client-certificate: ${JSON.stringify(credentials.clientCert.cert)}\n` +
        `    client-key: ${JSON.stringify(credentials.clientCert.key)}`;
  const text = `apiVersion: v1
kind: Config
clusters:
- name: etcd-registrar-test
  cluster:
    server: ${JSON.stringify(server)}
    certificate-authority: ${JSON.stringify(caPath)}
users:
- name: ${JSON.stringify(user)}
  user:
${userFields}
contexts:
- name: ${JSON.stringify(user)}
  context:
    cluster: etcd-registrar-test
    user: ${JSON.stringify(user)}
current-context: ${JSON.stringify(user)}
`;
  await writeFile(path, text, { mode: 0o600 });
  return path;
}
