// Where the API server and its credentials come from, read without @kubernetes/client-node:
// which configuration applies (the --kubeconfig flag, $KUBECONFIG, ~/.kube/config, in-cluster;
// client-node's loadFromDefault order), and what a kubeconfig file says, as far as the
// controller's own path (kube-access.ts) supports it: a server with its CA and TLS options, and a
// bearer token (inline or from a file) or a client certificate. Anything else (exec or
// auth-provider plugins, basic auth, impersonation, a proxy, several merged files, no current
// context, ...) is reported as a fallback reason: client-node handles it (kube-access-client-node.ts).
import { accessSync, existsSync, readFileSync } from 'node:fs';
import { isIPv6 } from 'node:net';
import { delimiter, dirname, isAbsolute, join } from 'node:path';
import { load } from 'js-yaml';

/** A certificate, key or CA: a file (re-read when it changes) or inline bytes (a -data field). */
export type Material = { readonly file: string } | { readonly data: Buffer };

/** What the controller's own path needs to reach the API server. */
export interface DirectConfig {
  /** Base URL, without a trailing slash. */
  readonly server: string;
  readonly ca: Material | undefined;
  readonly cert: Material | undefined;
  readonly key: Material | undefined;
  readonly insecureSkipTlsVerify: boolean;
  readonly tlsServerName: string | undefined;
  /** An inline bearer token (used until tokenFile, if any, has been read). */
  readonly token: string | undefined;
  /** A bearer token file, re-read every minute (bound service-account tokens rotate). */
  readonly tokenFile: string | undefined;
}

/** Where the configuration comes from. */
export type KubeSource =
  | { readonly kind: 'file'; readonly path: string; readonly via: 'flag' | 'KUBECONFIG' | 'home' }
  /** $KUBECONFIG with several files: client-node merges them. */
  | { readonly kind: 'files'; readonly paths: readonly string[] }
  | { readonly kind: 'in-cluster'; readonly serviceAccountDir: string };

/** No configuration found at all: not in a pod, no $KUBECONFIG, no ~/.kube/config. */
export class NoClusterError extends Error {
  constructor(message = 'no cluster configured') {
    super(message);
    this.name = 'NoClusterError';
  }
}

export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface SourceOptions {
  /** The --kubeconfig flag. */
  readonly kubeconfig?: string | undefined;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Default /var/run/secrets/kubernetes.io/serviceaccount (tests point it elsewhere). */
  readonly serviceAccountDir?: string | undefined;
}

/**
 * The configuration to use, in client-node's loadFromDefault order: the flag's file; else the
 * files of $KUBECONFIG; else ~/.kube/config if it exists; else in-cluster if the service
 * account token is mounted. Throws NoClusterError when none applies.
 */
export function kubeSourceOf(opts: SourceOptions): KubeSource {
  if (opts.kubeconfig !== undefined) return { kind: 'file', path: opts.kubeconfig, via: 'flag' };
  const list = opts.env['KUBECONFIG'] ?? '';
  if (list !== '') {
    const paths = list.split(delimiter).filter((p) => p !== '');
    if (paths.length === 1 && paths[0] !== undefined) return { kind: 'file', path: paths[0], via: 'KUBECONFIG' };
    if (paths.length > 1) return { kind: 'files', paths };
  }
  const home = homeDir(opts.env);
  if (home !== undefined) {
    const path = join(home, '.kube', 'config');
    if (existsSync(path)) return { kind: 'file', path, via: 'home' };
  }
  const serviceAccountDir = opts.serviceAccountDir ?? SERVICE_ACCOUNT_DIR;
  if (existsSync(join(serviceAccountDir, 'token'))) return { kind: 'in-cluster', serviceAccountDir };
  throw new NoClusterError();
}

/** $HOME if it is set and accessible (client-node's findHomeDir on Linux and macOS). */
function homeDir(env: Readonly<Record<string, string | undefined>>): string | undefined {
  const home = env['HOME'];
  if (home === undefined || home === '') return undefined;
  try {
    accessSync(home);
    return home;
  } catch {
    return undefined;
  }
}

/** In a pod: the service's address from the environment, the mounted token and CA. */
export function inClusterConfig(env: Readonly<Record<string, string | undefined>>, serviceAccountDir: string): DirectConfig {
  const host = env['KUBERNETES_SERVICE_HOST'] ?? '';
  const port = env['KUBERNETES_SERVICE_PORT'] ?? '';
  if (host === '' || port === '') {
    throw new Error(`in-cluster: ${join(serviceAccountDir, 'token')} exists but KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set`);
  }
  // As client-node: plain http on the usual insecure ports, https otherwise.
  const scheme = port === '80' || port === '8080' || port === '8001' ? 'http' : 'https';
  return {
    server: `${scheme}://${isIPv6(host) ? `[${host}]` : host}:${port}`,
    ca: { file: join(serviceAccountDir, 'ca.crt') },
    cert: undefined,
    key: undefined,
    insecureSkipTlsVerify: false,
    tlsServerName: undefined,
    token: undefined,
    tokenFile: join(serviceAccountDir, 'token'),
  };
}

/** A kubeconfig read by the controller's own path, or why client-node has to read it. */
export type ParsedKubeconfig =
  | { readonly kind: 'direct'; readonly config: DirectConfig; readonly context: string }
  | { readonly kind: 'fallback'; readonly reason: string };

const CLUSTER_FIELDS = new Set(['server', 'certificate-authority', 'certificate-authority-data', 'insecure-skip-tls-verify', 'tls-server-name', 'extensions', 'disable-compression']);
const USER_FIELDS = new Set(['token', 'tokenFile', 'token-file', 'client-certificate', 'client-certificate-data', 'client-key', 'client-key-data', 'extensions']);
/** User fields client-node handles and the direct path does not, with how the reason names them. */
const USER_FALLBACKS: Readonly<Record<string, string>> = {
  exec: 'uses exec credentials',
  'auth-provider': 'uses an auth-provider',
  username: 'uses basic authentication (username/password)',
  password: 'uses basic authentication (username/password)',
  as: 'impersonates (as)',
  'as-groups': 'impersonates (as-groups)',
  'as-uid': 'impersonates (as-uid)',
  'as-user-extra': 'impersonates (as-user-extra)',
};

type Obj = Readonly<Record<string, unknown>>;

const isObject = (value: unknown): value is Obj => value !== null && typeof value === 'object' && !Array.isArray(value);

/** Reads and parses a kubeconfig file; relative file paths resolve against its directory. */
export function readKubeconfig(path: string): ParsedKubeconfig {
  return parseKubeconfig(readFileSync(path, 'utf8'), dirname(path));
}

/** A kubeconfig's current context, resolved to what the direct path needs (or a fallback reason). */
export function parseKubeconfig(text: string, baseDir: string): ParsedKubeconfig {
  const doc = load(text) as unknown;
  const root: Obj = isObject(doc) ? doc : {};
  const fallback = (reason: string): ParsedKubeconfig => ({ kind: 'fallback', reason });
  const current = root['current-context'];
  if (typeof current !== 'string' || current === '') return fallback('no current-context');
  const context = named(root['contexts'], 'context', current);
  if (context === undefined) return fallback(`current-context "${current}" names no context`);
  const clusterName = context['cluster'];
  if (typeof clusterName !== 'string' || clusterName === '') return fallback(`context "${current}" names no cluster`);
  const cluster = named(root['clusters'], 'cluster', clusterName);
  if (cluster === undefined) return fallback(`context "${current}" names cluster "${clusterName}", which is not defined`);
  if (typeof cluster['proxy-url'] === 'string' && cluster['proxy-url'] !== '') return fallback(`cluster "${clusterName}" uses proxy-url`);
  for (const field of Object.keys(cluster)) {
    if (!CLUSTER_FIELDS.has(field) && field !== 'proxy-url') return fallback(`cluster "${clusterName}" has the field ${field}`);
  }
  const server = cluster['server'];
  if (typeof server !== 'string' || !/^https?:\/\//i.test(server)) return fallback(`cluster "${clusterName}" has no http(s) server URL`);
  // No user: anonymous, as in client-go.
  const userName = context['user'];
  let user: Obj = {};
  if (typeof userName === 'string' && userName !== '') {
    const found = named(root['users'], 'user', userName);
    if (found === undefined) return fallback(`context "${current}" names user "${userName}", which is not defined`);
    user = found;
  }
  for (const [field, value] of Object.entries(user)) {
    if (value === null || value === undefined || value === '') continue;
    const reason = USER_FALLBACKS[field];
    if (reason !== undefined) return fallback(`user "${String(userName)}" ${reason}`);
    if (!USER_FIELDS.has(field)) return fallback(`user "${String(userName)}" has the field ${field}`);
  }
  const file = (value: unknown): string | undefined => (typeof value === 'string' && value !== '' ? resolvePath(baseDir, value) : undefined);
  const cert = material(file(user['client-certificate']), user['client-certificate-data']);
  const key = material(file(user['client-key']), user['client-key-data']);
  if ((cert === undefined) !== (key === undefined)) {
    throw new Error(`user "${String(userName)}": client-certificate and client-key go together (only one is set)`);
  }
  const token = user['token'];
  const tlsServerName = cluster['tls-server-name'];
  return {
    kind: 'direct',
    context: current,
    config: {
      server: server.replace(/\/+$/, ''),
      ca: material(file(cluster['certificate-authority']), cluster['certificate-authority-data']),
      cert,
      key,
      insecureSkipTlsVerify: cluster['insecure-skip-tls-verify'] === true,
      tlsServerName: typeof tlsServerName === 'string' && tlsServerName !== '' ? tlsServerName : undefined,
      token: typeof token === 'string' && token !== '' ? token : undefined,
      tokenFile: file(user['tokenFile']) ?? file(user['token-file']),
    },
  };
}

/** The body (`cluster`, `context`, `user`) of the entry called `name` in a list of named entries. */
function named(list: unknown, body: string, name: string): Obj | undefined {
  if (!Array.isArray(list)) return undefined;
  for (const entry of list as unknown[]) {
    if (isObject(entry) && entry['name'] === name) {
      const inner = entry[body];
      return isObject(inner) ? inner : {};
    }
  }
  return undefined;
}

/** A file wins over inline data (as in client-node); data is base64. */
function material(file: string | undefined, data: unknown): Material | undefined {
  if (file !== undefined) return { file };
  if (typeof data === 'string' && data !== '') return { data: Buffer.from(data, 'base64') };
  return undefined;
}

/** Relative paths in a kubeconfig are relative to its directory (client-go, client-node). */
function resolvePath(baseDir: string, path: string): string {
  return isAbsolute(path) ? path : join(baseDir, path);
}
