// A measurement in a fresh Node process of its own (its own heap, JIT state and peak RSS), whose
// result is the JSON it writes to stdout: the intake children (intake-child.ts) and the machine's
// pace (pace.ts).
import { spawn } from 'node:child_process';

/** Runs `script` with `args` under `node --expose-gc ...nodeFlags` and parses what it prints; `what` names it in an error. */
export function runJsonChild<T>(script: string, args: readonly string[], what: string, nodeFlags: readonly string[] = []): Promise<T> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, ['--expose-gc', ...nodeFlags, script, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
    proc.on('error', reject);
    proc.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as T) : reject(new Error(`${what} exited ${String(code)}`))));
  });
}
