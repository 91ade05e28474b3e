// `npm run image [-- --tag NAME]`: builds the container image from the Dockerfile with
// buildah, on base images built locally from Debian packages (scripts/image/bases.ts;
// cached, so only the first run builds them), and prints the image name and size.
// `podman --runtime runc --cgroup-manager=cgroupfs run ...` starts it afterwards (docs/image.md).
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ensureBaseImages } from './image/bases.ts';
import { checkImageToolchain, ImageToolchainError, lastErrorLine, podman, podmanOk, run } from './image/toolchain.ts';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..');

export function defaultImageTag(): string {
  const { version } = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };
  return `localhost/etcd-registrar:${version}`;
}

export interface BuildOptions {
  readonly tag?: string;
  /** Base images to use instead of the locally built ones (the Dockerfile's ARGs). */
  readonly buildImage?: string;
  readonly runtimeImage?: string;
  readonly log?: (line: string) => void;
}

export interface BuiltImage {
  readonly name: string;
  readonly id: string;
  /** Uncompressed size in bytes, as podman reports it. */
  readonly size: number;
  readonly baseImages: { readonly build: string; readonly runtime: string };
}

export async function buildImage(opts: BuildOptions = {}): Promise<BuiltImage> {
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const tag = opts.tag ?? defaultImageTag();
  await checkImageToolchain();
  let bases: { build: string; runtime: string };
  if (opts.buildImage !== undefined && opts.runtimeImage !== undefined) {
    bases = { build: opts.buildImage, runtime: opts.runtimeImage };
  } else {
    const built = await ensureBaseImages(log);
    bases = { build: opts.buildImage ?? built.build, runtime: opts.runtimeImage ?? built.runtime };
  }
  // No registry is reachable: a base that is not in local storage is an error, named here
  // rather than after buildah has tried to pull it.
  for (const [arg, name] of [['BUILD_IMAGE', bases.build], ['RUNTIME_IMAGE', bases.runtime]] as const) {
    if ((await podman(['image', 'exists', name])).code !== 0) {
      throw new ImageToolchainError(`base image ${arg}=${name} is not in local storage (no registry to pull it from): build it with \`npm run image\` or name a local image`);
    }
  }
  const started = Date.now();
  log(`[image] buildah bud ${tag} (FROM ${bases.build} / ${bases.runtime})`);
  const result = await run(
    'buildah',
    ['bud', '--isolation', 'chroot', '--layers', '--pull-never', '--build-arg', `BUILD_IMAGE=${bases.build}`, '--build-arg', `RUNTIME_IMAGE=${bases.runtime}`, ...extraCaArgs(), '-t', tag, '-f', join(repoRoot, 'Dockerfile'), repoRoot],
    {
      onLine: (line) => {
        if (/STEP \d+|^COMMIT|Using cache/.test(line)) log(`[image] ${Math.round((Date.now() - started) / 1000)}s ${line.slice(0, 160)}`);
      },
    },
  );
  if (result.code !== 0) throw new ImageToolchainError(`buildah bud failed: ${lastErrorLine(result)}`);
  const [id = '', size = '0'] = (await podmanOk(['image', 'inspect', '--format', '{{.Id}} {{.Size}}', tag])).trim().split(' ');
  return { name: tag, id, size: Number(size), baseImages: { build: bases.build, runtime: bases.runtime } };
}

/**
 * `npm ci` in the build stage reaches the registry (only when package-lock.json changed:
 * buildah's layer cache keeps the installed tree otherwise). Where the host trusts an extra
 * CA for that (a TLS-intercepting egress proxy, NODE_EXTRA_CA_CERTS), the build gets it too.
 */
function extraCaArgs(): string[] {
  const file = process.env['NODE_EXTRA_CA_CERTS'];
  if (file === undefined || file === '' || !existsSync(file)) return [];
  return ['--volume', `${file}:/etc/ssl/host-ca.pem:ro`, '--build-arg', 'NODE_EXTRA_CA_CERTS=/etc/ssl/host-ca.pem'];
}

export function megabytes(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: { tag: { type: 'string' }, 'build-image': { type: 'string' }, 'runtime-image': { type: 'string' } },
  });
  try {
    const image = await buildImage({
      ...(values.tag === undefined ? {} : { tag: values.tag }),
      ...(values['build-image'] === undefined ? {} : { buildImage: values['build-image'] }),
      ...(values['runtime-image'] === undefined ? {} : { runtimeImage: values['runtime-image'] }),
    });
    process.stdout.write(`${image.name} ${megabytes(image.size)} (uncompressed)\n`);
  } catch (error) {
    if (!(error instanceof ImageToolchainError)) throw error;
    process.stderr.write(`npm run image: ${error.message}\n`);
    process.exit(1);
  }
}
