// `npm run sandbox`: a local control plane (kube-apiserver, controller-manager, scheduler,
// KWOK nodes), a registry etcd and the controller, with an example Deployment; prints the
// registry as it changes until Ctrl-C, then stops everything it started.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { envFileText, startCluster, type Cluster } from '../test/cluster/cluster.ts';
import { ensureTools } from '../test/cluster/tools.ts';
import { repoRoot, RegistryObserver, startController, type ControllerProcess } from '../test/e2e/support.ts';

/**
 * The commands the sandbox tells the user to try, exactly as printed (a command, then an
 * optional `# comment`). They must work when pasted into a shell in the repository, where
 * `node` may be the machine's own older Node: hence `npx etcd-registrar` (npm puts the
 * project's Node 24 first on PATH), not `node bin/etcd-registrar.js`. test/sandbox runs them.
 */
export function sandboxCommands(dir: string, environment: string): string[] {
  const prefix = `/search_${environment}/`;
  return [
    `source ${join(dir, 'env')}`,
    '$KUBECTL -n demo scale deployment/search --replicas=6     # keys appear',
    '$KUBECTL -n demo scale deployment/search --replicas=1     # keys disappear as pods terminate',
    `$ETCDCTL get --prefix ${prefix}                         # the registry`,
    `npx etcd-registrar list --kubeconfig "$KUBECONFIG" --etcd-endpoints "$ETCD_ENDPOINTS" --owner-id sandbox --environment ${environment}`,
    '$KUBECTL -n demo describe pod -l app.kubernetes.io/name=search  # Registered events',
  ];
}

export const COMMANDS_HEADER = 'In another terminal (from this repository):';
export const COMMANDS_FOOTER = 'Ctrl-C stops everything.';

if (process.argv[1] === fileURLToPath(import.meta.url)) await sandbox();

async function sandbox(): Promise<void> {
  const { values } = parseArgs({ options: { dir: { type: 'string', default: join(repoRoot, '.sandbox') }, environment: { type: 'string', default: 'PRE' } } });
  const dir = values.dir;
  const say = (line: string): void => {
    process.stdout.write(`${line}\n`);
  };

  if (!existsSync(join(repoRoot, 'dist', 'cli.js'))) {
    say('dist/ is missing: run `npm ci` (it builds) or `npm run build` first');
    process.exit(2);
  }
  say('[sandbox] making sure the control plane binaries are built (a first build takes ~10 min on 2 cores)');
  await ensureTools();
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });

  let cluster: Cluster | undefined;
  let controller: ControllerProcess | undefined;
  let observer: RegistryObserver | undefined;
  let stopping = false;
  async function shutdown(code: number): Promise<never> {
    if (!stopping) {
      stopping = true;
      say('\n[sandbox] stopping the controller, the cluster and the registry etcd');
      await controller?.stop().catch(() => undefined);
      await observer?.close().catch(() => undefined);
      await cluster?.stop().catch(() => undefined);
    }
    process.exit(code);
  }
  process.on('SIGINT', () => void shutdown(0));
  process.on('SIGTERM', () => void shutdown(0));

  try {
    say('[sandbox] starting etcd, kube-apiserver, kube-controller-manager, kube-scheduler and KWOK');
    cluster = await startCluster({ dir: join(dir, 'cluster'), log: (line) => say(`[cluster] ${line}`) });
    await writeFile(join(dir, 'env'), envFileText(cluster));
    await cluster.createNamespace('demo');

    controller = await startController({
      kubeconfig: cluster.kubeconfigPath,
      etcdEndpoints: cluster.registry.endpoints,
      dir,
      extraArgs: ['--environment', values.environment, '--owner-id', 'sandbox', '--lease-ttl', '10s', '--reconcile-interval', '30s'],
    });
    await controller.waitReady();
    say(`[sandbox] controller ready: metrics ${controller.metricsUrl}/metrics, log ${controller.logPath}`);

    observer = new RegistryObserver(cluster.registry.endpoints);
    const prefix = `/search_${values.environment}/`;
    observer.watch(prefix).catch((error: unknown) => say(`[sandbox] watch failed: ${String(error)}`));
    let printed = 0;
    setInterval(() => {
      for (const event of observer?.events.slice(printed) ?? []) {
        say(event.type === 'put' ? `[etcd] PUT    ${event.key} = ${event.value}` : `[etcd] DELETE ${event.key}`);
      }
      printed = observer?.events.length ?? 0;
    }, 100).unref();

    await cluster.kubectl(['apply', '-f', join(repoRoot, 'examples', 'search-deployment.yaml')]);
    say(`[sandbox] applied examples/search-deployment.yaml (3 replicas); registrations appear below as pods turn Ready.

  ${COMMANDS_HEADER}
  ${sandboxCommands(dir, values.environment).map((command) => `  ${command}`).join('\n')}
  ${COMMANDS_FOOTER}
  `);
    await controller.proc.exited;
    // Ctrl-C stops the controller too; only an exit nobody asked for is an error.
    if (!stopping) {
      say('[sandbox] the controller exited unexpectedly; see its log');
      await shutdown(1);
    }
  } catch (error) {
    say(`[sandbox] failed: ${error instanceof Error ? error.message : String(error)}`);
    await shutdown(1);
  }
}
