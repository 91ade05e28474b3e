// Debian packages the tests run as real components (consumers of the registry, the image
// toolchain). `npm run tools` installs the missing ones with apt-get when it runs as root,
// so `npm ci && npm test` stays the whole set-up on a fresh Debian machine; elsewhere it
// names what to install and stops.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

export interface SystemPackage {
  /** Debian package name. */
  name: string;
  /** A file the package installs; present means installed. */
  probe: string;
  /** What the tests use it for (printed when it is missing). */
  usedFor: string;
}

export const SYSTEM_PACKAGES: readonly SystemPackage[] = [
  { name: 'nginx', probe: '/usr/sbin/nginx', usedFor: 'the discovery tests route traffic through it' },
  { name: 'dnsutils', probe: '/usr/bin/dig', usedFor: 'the DNS tests resolve through CoreDNS with it' },
  { name: 'mmdebstrap', probe: '/usr/bin/mmdebstrap', usedFor: 'the image tests build their base images with it' },
  { name: 'buildah', probe: '/usr/bin/buildah', usedFor: 'the image tests build the Dockerfile with it' },
  { name: 'podman', probe: '/usr/bin/podman', usedFor: 'the image tests run the image with it' },
  { name: 'runc', probe: '/usr/sbin/runc', usedFor: 'podman runs the image through it' },
  { name: 'binutils', probe: '/usr/bin/strip', usedFor: 'the image build strips the Node binary with it' },
];

export class SystemPackageError extends Error {
  override name = 'SystemPackageError';
}

export function missingSystemPackages(packages: readonly SystemPackage[] = SYSTEM_PACKAGES): SystemPackage[] {
  return packages.filter((p) => !existsSync(p.probe));
}

/** Installs what is missing (apt-get, as root); throws one line naming the package otherwise. */
export function ensureSystemPackages(
  packages: readonly SystemPackage[] = SYSTEM_PACKAGES,
  log: (line: string) => void = (line) => console.error(line),
): void {
  const missing = missingSystemPackages(packages);
  if (missing.length === 0) return;
  const names = missing.map((p) => p.name);
  const isRoot = process.getuid?.() === 0;
  const hasApt = existsSync('/usr/bin/apt-get');
  if (!isRoot || !hasApt) {
    const first = missing[0];
    throw new SystemPackageError(
      `missing Debian package ${names.join(', ')} (${first?.usedFor ?? ''}): install with apt-get install ${names.join(' ')}`,
    );
  }
  log(`[apt] installing ${names.join(', ')}...`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const update = spawnSync('apt-get', ['update', '-q'], { stdio: ['ignore', 'ignore', 'inherit'], env });
  if (update.status !== 0) throw new SystemPackageError(`apt-get update failed (exit ${update.status ?? 'signal'})`);
  const install = spawnSync('apt-get', ['install', '-y', '-q', ...names], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env,
  });
  if (install.status !== 0) {
    throw new SystemPackageError(`apt-get install ${names.join(' ')} failed (exit ${install.status ?? 'signal'})`);
  }
  const still = missingSystemPackages(missing);
  if (still.length > 0) {
    throw new SystemPackageError(`apt-get installed ${names.join(' ')} but ${still.map((p) => p.probe).join(', ')} is still missing`);
  }
  log(`[apt] installed ${names.join(', ')}`);
}
