// Certificates, keys and kubeconfigs for the test cluster, made with the openssl CLI.
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
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

async function makeCa(dir: string): Promise<KeyPair> {
  const pair = { cert: join(dir, 'ca.crt'), key: join(dir, 'ca.key') };
  await openssl([
    'req', '-x509', '-new', ...EC_KEY, ...DAYS, '-keyout', pair.key, '-out', pair.cert,
    '-subj', '/CN=etcd-registrar-test-ca',
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
