// The two base images the Dockerfile names, built locally from Debian packages when no
// registry can be pulled from (docs/image.md):
//   build:   Debian bookworm minbase + ca-certificates + Node 24 + npm, laid out like
//            node:24-bookworm-slim (/usr/local/bin/node, npm, npx);
//   runtime: distroless-like: the libraries Node links (libc, libm, libstdc++, libgcc_s),
//            ca-certificates, /nodejs/bin/node (stripped), users root and nonroot (65532),
//            no shell and no package manager, like gcr.io/distroless/nodejs24-debian12.
// Node is the binary the `node` devDependency installed (the same 24.x the tests run), npm
// the one running this build. Both images are saved as archives in the tools cache, keyed
// by a hash of their inputs, so a warm run loads them (or finds them in podman's storage)
// instead of running mmdebstrap again (~2 min, ~100 MB of downloads from deb.debian.org).
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { chmod, chown, copyFile, cp, mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { imageCacheDir, ImageToolchainError, podman, podmanOk, runOk } from './toolchain.ts';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export const DEBIAN_SUITE = 'bookworm';
/** Packages beyond minbase in the build base; the runtime base takes its files from them. */
export const BUILD_BASE_PACKAGES = ['ca-certificates', 'libstdc++6'] as const;
/** The shared objects Node 24 links (ldd), copied into the runtime base under these names. */
const NODE_LIBRARIES = ['ld-linux-x86-64.so.2', 'libc.so.6', 'libm.so.6', 'libdl.so.2', 'libpthread.so.0', 'libgcc_s.so.1', 'libstdc++.so.6'];
/** Debian packages whose copyright files go along with the files taken from them. */
const RUNTIME_PACKAGES = ['libc6', 'libgcc-s1', 'libstdc++6', 'gcc-12-base', 'ca-certificates'];
export const NONROOT_UID = 65532;

export interface BaseImages {
  readonly build: string;
  readonly runtime: string;
  /** True when neither had to be built now (found in storage or loaded from the cache). */
  readonly warm: boolean;
}

interface Inputs {
  readonly nodeBinary: string;
  readonly nodeVersion: string;
  readonly npmDir: string;
  readonly npmVersion: string;
  readonly key: string;
}

function nodeBinary(): string {
  const path = join(repoRoot, 'node_modules', 'node', 'bin', 'node');
  if (!existsSync(path)) throw new ImageToolchainError(`the Node 24 binary is missing (${path}): run \`npm ci\` first`);
  return realpathSync(path);
}

/** The npm package that runs this build (npm_execpath under npm; else `npm` on PATH). */
function npmPackageDir(): string {
  let cli = process.env['npm_execpath'];
  if (cli === undefined || cli === '' || !cli.endsWith('npm-cli.js')) {
    try {
      cli = execFileSync('sh', ['-c', 'command -v npm'], { encoding: 'utf8' }).trim();
    } catch {
      throw new ImageToolchainError('npm is not on PATH: the build base copies the npm that runs the build');
    }
  }
  const dir = dirname(dirname(realpathSync(cli)));
  const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string };
  if (manifest.name !== 'npm') throw new ImageToolchainError(`could not find npm's package from ${cli}`);
  return dir;
}

function inputs(): Inputs {
  const binary = nodeBinary();
  const nodeVersion = execFileSync(binary, ['--version'], { encoding: 'utf8' }).trim();
  if (!nodeVersion.startsWith('v24.')) throw new ImageToolchainError(`the image needs Node 24, node_modules/node/bin/node is ${nodeVersion}`);
  const npmDir = npmPackageDir();
  const npmVersion = (JSON.parse(readFileSync(join(npmDir, 'package.json'), 'utf8')) as { version: string }).version;
  // This file is part of the key: changing how the bases are made rebuilds them.
  const script = readFileSync(fileURLToPath(import.meta.url), 'utf8');
  const key = createHash('sha256')
    .update(JSON.stringify({ DEBIAN_SUITE, BUILD_BASE_PACKAGES, nodeVersion, npmVersion, script }))
    .digest('hex')
    .slice(0, 12);
  return { nodeBinary: binary, nodeVersion, npmDir, npmVersion, key };
}

export function baseImageNames(key: string): { build: string; runtime: string } {
  return { build: `localhost/etcd-registrar-base-build:${key}`, runtime: `localhost/etcd-registrar-base-runtime:${key}` };
}

async function imageExists(name: string): Promise<boolean> {
  return (await podman(['image', 'exists', name])).code === 0;
}

/** Makes both base images available in podman's storage, building them only when needed. */
export async function ensureBaseImages(log: (line: string) => void): Promise<BaseImages> {
  const input = inputs();
  const names = baseImageNames(input.key);
  const archives = { build: join(imageCacheDir(), `base-build-${input.key}.tar`), runtime: join(imageCacheDir(), `base-runtime-${input.key}.tar`) };
  let warm = true;
  for (const which of ['build', 'runtime'] as const) {
    if (await imageExists(names[which])) continue;
    if (existsSync(archives[which])) {
      log(`[image] loading ${names[which]} from ${archives[which]}`);
      await podmanOk(['load', '-q', '-i', archives[which]]);
      if (await imageExists(names[which])) continue;
    }
    warm = false;
  }
  if (!warm) {
    log(`[image] building the base images (Node ${input.nodeVersion}, npm ${input.npmVersion}, Debian ${DEBIAN_SUITE}); a cold build takes ~3 min`);
    await buildBases(input, names, log);
    for (const which of ['build', 'runtime'] as const) {
      await rm(archives[which], { force: true });
      await podmanOk(['save', '-q', '-o', `${archives[which]}.part`, names[which]]);
      await runOk('mv', [`${archives[which]}.part`, archives[which]]);
    }
    log(`[image] cached ${archives.build} and ${archives.runtime}`);
  }
  return { ...names, warm };
}

async function buildBases(input: Inputs, names: { build: string; runtime: string }, log: (line: string) => void): Promise<void> {
  await mkdir(imageCacheDir(), { recursive: true });
  const work = await mkdtemp(join(imageCacheDir(), 'work-'));
  try {
    const rootfs = join(work, 'build-rootfs');
    const started = Date.now();
    let lastProgress = 0;
    await runOk(
      'mmdebstrap',
      ['--variant=minbase', `--include=${BUILD_BASE_PACKAGES.join(',')}`, '--dpkgopt=path-exclude=/usr/share/man/*', '--dpkgopt=path-exclude=/usr/share/locale/*', DEBIAN_SUITE, rootfs],
      {
        env: { ...process.env, LC_ALL: 'C.UTF-8' },
        onLine: (line) => {
          // mmdebstrap's phases ("I: downloading packages with apt...") as progress.
          if (line.startsWith('I: ') && Date.now() - lastProgress > 5000) {
            lastProgress = Date.now();
            log(`[image] mmdebstrap ${Math.round((Date.now() - started) / 1000)}s: ${line.slice(3)}`);
          }
        },
      },
    );
    log(`[image] Debian ${DEBIAN_SUITE} minbase ready in ${Math.round((Date.now() - started) / 1000)}s`);
    const strippedNode = join(work, 'node');
    await runOk('strip', ['-o', strippedNode, input.nodeBinary]);
    await chmod(strippedNode, 0o755);

    // Build base: node:24-bookworm-slim's layout.
    await copyFile(strippedNode, join(rootfs, 'usr', 'local', 'bin', 'node'));
    await chmod(join(rootfs, 'usr', 'local', 'bin', 'node'), 0o755);
    await mkdir(join(rootfs, 'usr', 'local', 'lib', 'node_modules'), { recursive: true });
    await cp(input.npmDir, join(rootfs, 'usr', 'local', 'lib', 'node_modules', 'npm'), { recursive: true, verbatimSymlinks: true });
    await symlink('../lib/node_modules/npm/bin/npm-cli.js', join(rootfs, 'usr', 'local', 'bin', 'npm'));
    await symlink('../lib/node_modules/npm/bin/npx-cli.js', join(rootfs, 'usr', 'local', 'bin', 'npx'));
    await importRootfs(rootfs, work, names.build, [
      'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      `ENV NODE_VERSION=${input.nodeVersion.slice(1)}`,
      'CMD ["node"]',
    ]);

    // Runtime base: only what Node needs to run and to verify TLS peers.
    const runtime = join(work, 'runtime-rootfs');
    const libDir = join(runtime, 'usr', 'lib', 'x86_64-linux-gnu');
    await mkdir(libDir, { recursive: true });
    for (const lib of NODE_LIBRARIES) await copyFile(realpathSync(join(rootfs, 'usr', 'lib', 'x86_64-linux-gnu', lib)), join(libDir, lib));
    await mkdir(join(runtime, 'usr', 'lib64'), { recursive: true });
    await symlink('../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2', join(runtime, 'usr', 'lib64', 'ld-linux-x86-64.so.2'));
    await symlink('usr/lib', join(runtime, 'lib'));
    await symlink('usr/lib64', join(runtime, 'lib64'));
    await mkdir(join(runtime, 'etc', 'ssl', 'certs'), { recursive: true });
    await copyFile(join(rootfs, 'etc', 'ssl', 'certs', 'ca-certificates.crt'), join(runtime, 'etc', 'ssl', 'certs', 'ca-certificates.crt'));
    await copyFile(join(rootfs, 'usr', 'lib', 'os-release'), join(runtime, 'etc', 'os-release'));
    for (const pkg of RUNTIME_PACKAGES) {
      const copyright = join(rootfs, 'usr', 'share', 'doc', pkg, 'copyright');
      if (!existsSync(copyright)) continue;
      await mkdir(join(runtime, 'usr', 'share', 'doc', pkg), { recursive: true });
      await copyFile(copyright, join(runtime, 'usr', 'share', 'doc', pkg, 'copyright'));
    }
    await writeFile(join(runtime, 'etc', 'passwd'), `root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:${NONROOT_UID}:${NONROOT_UID}:nonroot:/home/nonroot:/sbin/nologin\n`);
    await writeFile(join(runtime, 'etc', 'group'), `root:x:0:\nnonroot:x:${NONROOT_UID}:\n`);
    await writeFile(join(runtime, 'etc', 'nsswitch.conf'), 'passwd: files\ngroup: files\nhosts: files dns\n');
    await mkdir(join(runtime, 'tmp'));
    await chmod(join(runtime, 'tmp'), 0o1777);
    await mkdir(join(runtime, 'root'), { mode: 0o700 });
    await mkdir(join(runtime, 'home', 'nonroot'), { recursive: true, mode: 0o700 });
    await chown(join(runtime, 'home', 'nonroot'), NONROOT_UID, NONROOT_UID);
    await mkdir(join(runtime, 'nodejs', 'bin'), { recursive: true });
    await copyFile(strippedNode, join(runtime, 'nodejs', 'bin', 'node'));
    await chmod(join(runtime, 'nodejs', 'bin', 'node'), 0o755);
    await importRootfs(runtime, work, names.runtime, [
      'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt',
      `USER ${NONROOT_UID}:${NONROOT_UID}`,
      'WORKDIR /home/nonroot',
      'ENTRYPOINT ["/nodejs/bin/node"]',
    ]);
    // The runtime base must run Node as nonroot with nothing else in it.
    const version = (await podmanOk(['run', '--rm', '--read-only', '--network', 'none', names.runtime, '--version'])).trim();
    if (version !== input.nodeVersion) throw new ImageToolchainError(`the runtime base runs Node ${version}, expected ${input.nodeVersion}`);
    log(`[image] base images ready: ${names.build}, ${names.runtime}`);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

async function importRootfs(dir: string, work: string, name: string, changes: readonly string[]): Promise<void> {
  const tarball = join(work, `${(await readdir(work)).length}.tar`);
  await runOk('tar', ['--numeric-owner', '--xattrs', '-C', dir, '-cf', tarball, '.']);
  await podmanOk(['import', '-q', ...changes.flatMap((c) => ['--change', c]), tarball, name]);
  await rm(tarball, { force: true });
}
