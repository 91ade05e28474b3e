import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { ensureTools, missingTools, toolPath, TOOL_VERSIONS, type ToolName } from './tools.ts';

const run = promisify(execFile);

// Each binary must report the version it is cached under (version ldflags applied).
const VERSION_COMMANDS: Record<ToolName, string[]> = {
  'kube-apiserver': ['--version'],
  'kube-controller-manager': ['--version'],
  'kube-scheduler': ['--version'],
  kubectl: ['version', '--client'],
  etcd: ['--version'],
  etcdctl: ['version'],
  kwok: ['--version'],
  helm: ['version', '--short'],
  'toxiproxy-server': ['-version'],
};

describe('cached tools', () => {
  it('are all built (npm run tools)', async () => {
    await ensureTools();
    assert.deepEqual(missingTools(), []);
  });

  for (const [name, args] of Object.entries(VERSION_COMMANDS) as [ToolName, string[]][]) {
    it(`${name} reports ${TOOL_VERSIONS[name]}`, async () => {
      const { stdout, stderr } = await run(toolPath(name), args);
      const version = TOOL_VERSIONS[name].replace(/^v/, '');
      assert.match(stdout + stderr, new RegExp(`v?${version.replaceAll('.', '\\.')}\\b`));
    });
  }
});
