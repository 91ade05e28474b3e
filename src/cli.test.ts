// The command line's usage errors: one line on stderr naming the flag, exit code 2, before
// anything connects (the key root used to pass parsing and fail at start with exit 1).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EXIT_USAGE, main } from './cli.ts';

async function usage(argv: string[]): Promise<{ code: number; stderr: string; stdout: string }> {
  let stderr = '';
  let stdout = '';
  const code = await main(argv, {}, { stderr: (t) => (stderr += t), stdout: (t) => (stdout += t) });
  return { code, stderr, stdout };
}

describe('usage errors exit 2 with one line naming the flag', () => {
  const cases: Array<[string[], string]> = [
    [['--key-root', 'registry'], '--key-root'],
    [['--annotation-prefix', 'Not A Prefix'], '--annotation-prefix'],
    [['--key-template', '/{service}/{ip}'], '--key-template'],
    [['--value-template', '{nope}'], '--value-template'],
  ];
  for (const command of [['run'], ['reconcile', '--once'], ['list']]) {
    for (const [flags, flag] of cases) {
      it(`${command.join(' ')} ${flags.join(' ')}`, async () => {
        const { code, stderr, stdout } = await usage([...command, ...flags]);
        assert.equal(code, EXIT_USAGE);
        assert.equal(stdout, '');
        assert.match(stderr, new RegExp(`^etcd-registrar: ${flag}: `));
        assert.equal(stderr.trimEnd().split('\n').length, 1, stderr);
      });
    }
  }
});
