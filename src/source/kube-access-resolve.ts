// Which access to the API server the controller uses (kube-access.ts): the configuration found
// in client-node's loadFromDefault order (kubeconfig.ts), served by the direct path when it can,
// by client-node (loaded only then) when it cannot, with the reason.
import { clientNodeAccess } from './kube-access-client-node.ts';
import { DirectAccess, type KubeAccess } from './kube-access.ts';
import { inClusterConfig, kubeSourceOf, readKubeconfig, type SourceOptions } from './kubeconfig.ts';

/** The access and, for the log line, which path it takes and why. */
export interface ResolvedKubeAccess {
  readonly access: KubeAccess;
  readonly path: 'direct' | 'client-node';
  /** Where the configuration came from: 'in-cluster', 'kubeconfig /path (context x)'. */
  readonly origin: string;
  /** Why client-node was needed (path client-node only). */
  readonly reason?: string;
}

export interface ResolveOptions extends SourceOptions {
  /** For tests: the clock of the token file's re-read. */
  readonly now?: (() => number) | undefined;
}

/**
 * The API server access for the flag, environment and files. Throws NoClusterError when there is
 * no configuration at all, other errors for one that cannot be read or used.
 */
export async function resolveKubeAccess(opts: ResolveOptions): Promise<ResolvedKubeAccess> {
  const source = kubeSourceOf(opts);
  const direct = { now: opts.now };
  switch (source.kind) {
    case 'in-cluster':
      return { access: new DirectAccess(inClusterConfig(opts.env, source.serviceAccountDir), direct), path: 'direct', origin: 'in-cluster' };
    case 'files': {
      const reason = `$KUBECONFIG lists ${source.paths.length} files (client-node merges them)`;
      return { access: await clientNodeAccess({ files: source.paths }), path: 'client-node', origin: `kubeconfig ${source.paths.join(', ')}`, reason };
    }
    case 'file': {
      const parsed = readKubeconfig(source.path);
      if (parsed.kind === 'direct') {
        return { access: new DirectAccess(parsed.config, direct), path: 'direct', origin: `kubeconfig ${source.path} (context ${parsed.context})` };
      }
      return { access: await clientNodeAccess({ files: [source.path] }), path: 'client-node', origin: `kubeconfig ${source.path}`, reason: parsed.reason };
    }
  }
}

/** The access of one kubeconfig file (tests, benches). */
export async function kubeAccessFromFile(path: string): Promise<KubeAccess> {
  return (await resolveKubeAccess({ kubeconfig: path, env: {} })).access;
}
