// `npm run sandbox` as a new user meets it: start it, then paste the commands it prints into
// a shell in the repository, with the machine's own PATH (whose `node` may be older than 24:
// the printed commands must not depend on it), and check what each one promises happens.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { COMMANDS_FOOTER, COMMANDS_HEADER } from '../../scripts/sandbox.ts';
import { eventually, repoRoot } from '../e2e/support.ts';

let dir = '';
let output = '';
let exited: Promise<number | null> | undefined;
let sandbox: ReturnType<typeof spawn> | undefined;
let commands: string[] = [];

/** The user's PATH: without the node_modules/.bin dirs npm puts first for scripts and tests. */
const userPath = (process.env['PATH'] ?? '').split(delimiter).filter((entry) => !entry.includes('node_modules')).join(delimiter);

/** Runs a printed command the way a user pastes it: bash, in the repo, after the printed `source` line. */
function paste(command: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const [source] = commands;
  assert.ok(source?.startsWith('source '), 'the first printed command sources the env file');
  return new Promise((resolve) => {
    execFile('bash', ['-c', `${source}\n${command}`], { cwd: repoRoot, env: { HOME: process.env['HOME'] ?? '/root', PATH: userPath, LANG: 'C.UTF-8' }, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) =>
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1, stdout, stderr }),
    );
  });
}

function printed(pattern: RegExp): string {
  const command = commands.find((c) => pattern.test(c));
  assert.ok(command !== undefined, `a printed command matching ${pattern} in:\n${commands.join('\n')}`);
  return command;
}

/** Registry keys, as the printed etcdctl command shows them (key and value lines alternate). */
async function registryKeys(): Promise<string[]> {
  const result = await paste(printed(/^\$ETCDCTL get --prefix /));
  assert.equal(result.code, 0, result.stderr);
  return result.stdout.split('\n').filter((line, index) => index % 2 === 0 && line !== '');
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'registrar-sandbox-'));
  sandbox = spawn(process.execPath, [join(repoRoot, 'scripts', 'sandbox.ts'), '--dir', dir], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  sandbox.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  sandbox.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  exited = new Promise((resolve) => sandbox?.on('exit', (code) => resolve(code)));
  await eventually('the sandbox prints the commands to try', () => output.includes(COMMANDS_FOOTER) || sandbox?.exitCode !== null, 180_000);
  assert.ok(output.includes(COMMANDS_FOOTER), `the sandbox stopped early:\n${output.slice(-3000)}`);
  const block = output.slice(output.indexOf(COMMANDS_HEADER) + COMMANDS_HEADER.length, output.indexOf(COMMANDS_FOOTER));
  commands = block.split('\n').map((line) => line.trim()).filter((line) => line !== '');
});

after(async () => {
  if (sandbox !== undefined && sandbox.exitCode === null) {
    sandbox.kill('SIGINT');
    await exited;
  }
  if (dir !== '') await rm(dir, { recursive: true, force: true });
});

describe('npm run sandbox', () => {
  it('prints no command that needs the machine\'s own node to be Node 24', () => {
    assert.ok(commands.length >= 5, commands.join('\n'));
    assert.ok(!commands.some((c) => /(^|\s)node\s/.test(c)), `a printed command runs plain node:\n${commands.join('\n')}`);
  });

  it('the printed commands work as printed: scale up and down, read the registry, list, describe', async () => {
    await eventually('3 registrations', async () => (await registryKeys()).length === 3, 60_000);
    const up = await paste(printed(/--replicas=6/));
    assert.equal(up.code, 0, up.stderr);
    await eventually('6 registrations after scaling to 6', async () => (await registryKeys()).length === 6, 60_000);
    const down = await paste(printed(/--replicas=1/));
    assert.equal(down.code, 0, down.stderr);
    await eventually('1 registration after scaling to 1', async () => (await registryKeys()).length === 1, 60_000);
    const [key] = await registryKeys();
    assert.match(key ?? '', /^\/search_PRE\/[\d.]+-86$/);
    const list = await paste(printed(/ list /));
    assert.equal(list.code, 0, `the printed list command failed:\n${list.stderr}`);
    assert.match(list.stdout, /^KEY\s+VALUE\s+POD\s+STATE/m);
    assert.ok(list.stdout.includes(key ?? '-'), `list shows ${key}:\n${list.stdout}`);
    const described = await paste(printed(/ describe pod /));
    assert.equal(described.code, 0, described.stderr);
    assert.match(described.stdout, /Registered/);
  });

  it('Ctrl-C stops everything it started', async () => {
    sandbox?.kill('SIGINT');
    assert.equal(await exited, 0);
    assert.match(output, /\[sandbox\] stopping the controller, the cluster and the registry etcd/);
  });
});
