// The npm package as users get it: `npm pack`, install the tarball into an empty folder,
// run the command through npx. The installed package must run on Node 24, so the project's
// Node (the `node` devDependency) comes first on PATH, as npm scripts put it.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { repoRoot } from '../e2e/support.ts';

const nodeBinDir = join(repoRoot, 'node_modules', 'node', 'bin');

interface Result {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function run(command: string, args: readonly string[], cwd: string): Promise<Result> {
  return new Promise((resolve) => {
    execFile(
      command,
      [...args],
      {
        cwd,
        maxBuffer: 32 * 1024 * 1024,
        env: { ...process.env, PATH: `${nodeBinDir}${delimiter}${process.env['PATH'] ?? ''}`, npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false' },
      },
      (error, stdout, stderr) => resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1, stdout, stderr }),
    );
  });
}

async function runOk(command: string, args: readonly string[], cwd: string): Promise<string> {
  const result = await run(command, args, cwd);
  assert.equal(result.code, 0, `${command} ${args.join(' ')} failed: ${result.stderr.slice(-2000)}`);
  return result.stdout;
}

describe('npm package', () => {
  let dir = '';
  let files: string[] = [];
  let tarball = '';

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'etcd-registrar-npm-'));
    // `npm pack` runs `prepare` (the build), as `npm publish` does.
    const packed = JSON.parse(await runOk('npm', ['pack', '--json', '--pack-destination', dir], repoRoot)) as Array<{ filename: string; files: Array<{ path: string }> }>;
    const [entry] = packed;
    assert.ok(entry, 'npm pack --json printed nothing');
    files = entry.files.map((f) => f.path);
    tarball = join(dir, entry.filename);
  });

  after(async () => {
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  });

  it('holds the command and its compiled code only: no tests, benches, docs or run reports', () => {
    assert.ok(files.includes('bin/etcd-registrar.js'), 'bin/etcd-registrar.js missing');
    assert.ok(files.includes('dist/cli.js'), 'dist/cli.js missing');
    const unexpected = files.filter(
      (f) => !(f === 'package.json' || f === 'README.md' || f === 'LICENSE' || f.startsWith('bin/') || f.startsWith('dist/')) || /\.test\.|(^|\/)testing\.js/.test(f),
    );
    assert.deepEqual(unexpected, [], `files that should not ship: ${unexpected.join(', ')}`);
  });

  it('installs from the tarball into an empty folder and runs through npx: --help, run --help, list --help', async () => {
    const app = join(dir, 'app');
    await runOk('mkdir', ['-p', app], dir);
    await writeFile(join(app, 'package.json'), '{ "name": "try-etcd-registrar", "private": true }\n');
    // --prefer-offline: the dependencies come from npm's cache, filled by `npm ci`.
    await runOk('npm', ['install', '--prefer-offline', '--no-save', tarball], app);
    const help = await runOk('npx', ['--no-install', 'etcd-registrar', '--help'], app);
    assert.match(help, /^Usage: etcd-registrar <command> \[flags\]/m);
    assert.match(help, /^\s+run\s/m);
    const runHelp = await runOk('npx', ['--no-install', 'etcd-registrar', 'run', '--help'], app);
    assert.match(runHelp, /--etcd-endpoints/);
    assert.match(runHelp, /--environment/);
    const listHelp = await runOk('npx', ['--no-install', 'etcd-registrar', 'list', '--help'], app);
    assert.match(listHelp, /list/);
    assert.match(listHelp, /--etcd-endpoints/);
    // A usage error still exits 2 with one line naming the flag, from the installed package.
    const bad = await run('npx', ['--no-install', 'etcd-registrar', 'run', '--no-such-flag'], app);
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /no-such-flag/);
  });
});
