// A constant-rate HTTP load through nginx with vegeta (built from its Go module by
// `npm run tools`), keeping every request's result: status, error, timing and the body,
// which names the pod that answered.
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { spawnManaged, type ManagedProcess } from '../cluster/process.ts';
import { ensureTools, toolPath } from '../cluster/tools.ts';

const run = promisify(execFile);

export interface LoadOptions {
  readonly url: string;
  /** Requests per second, constant (vegeta's open model: a slow answer does not lower it). */
  readonly rate: number;
  readonly dir: string;
  readonly name: string;
}

/** One request, as vegeta recorded it. */
export interface RequestResult {
  /** Start of the request, ms since the epoch. */
  readonly at: number;
  readonly latencyMs: number;
  readonly code: number;
  readonly error: string;
  /** The pod that answered (the pod server's body), '' when none did. */
  readonly pod: string;
}

export interface Load {
  /** Stops the attack (SIGINT: vegeta finishes in-flight requests) and returns every result. */
  stop(): Promise<RequestResult[]>;
  readonly proc: ManagedProcess;
}

export async function startLoad(opts: LoadOptions): Promise<Load> {
  await ensureTools(['vegeta']);
  const targets = join(opts.dir, `${opts.name}.targets`);
  const output = join(opts.dir, `${opts.name}.bin`);
  await writeFile(targets, `GET ${opts.url}\n`);
  const proc = spawnManaged({
    name: `vegeta-${opts.name}`,
    command: toolPath('vegeta'),
    args: [
      'attack', `-targets=${targets}`, `-rate=${String(opts.rate)}/1s`, '-duration=0',
      // A request that takes longer than this counts as failed (timeout).
      '-timeout=5s', `-output=${output}`, '-max-body=256',
    ],
    logPath: join(opts.dir, `${opts.name}.vegeta.log`),
  });
  return {
    proc,
    stop: async () => {
      proc.signal('SIGINT');
      await proc.exited;
      return decode(output);
    },
  };
}

interface VegetaJson {
  timestamp: string;
  latency: number;
  code: number;
  error: string;
  body: string | null;
}

async function decode(output: string): Promise<RequestResult[]> {
  const { stdout } = await run(toolPath('vegeta'), ['encode', '--to', 'json', output], { maxBuffer: 512 * 1024 * 1024 });
  const results: RequestResult[] = [];
  for (const line of stdout.split('\n')) {
    if (line === '') continue;
    const r = JSON.parse(line) as VegetaJson;
    const body = r.body === null || r.body === '' ? '' : Buffer.from(r.body, 'base64').toString('utf8').trim();
    results.push({
      at: Date.parse(r.timestamp),
      latencyMs: r.latency / 1e6,
      code: r.code,
      error: r.error,
      pod: r.code === 200 ? body : '',
    });
  }
  return results.sort((a, b) => a.at - b.at);
}

/** Failed: no answer, a timeout, or any status but 200. */
export function isFailure(r: RequestResult): boolean {
  return r.code !== 200 || r.error !== '';
}
