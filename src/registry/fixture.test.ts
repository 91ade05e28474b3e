// Shared helpers for the registry's integration tests (no tests here). Real etcd on
// 127.0.0.1 via test/cluster/etcd.ts; an independent etcd3 client observes the results.
import { createServer, connect, type Server, type Socket } from 'node:net';
import { Etcd3, type IKeyValue } from 'etcd3';
import { pino, type Logger } from 'pino';
import { startEtcd, type EtcdServer } from '../../test/cluster/etcd.ts';
import { EtcdRegistry, type RegistryOptions } from './index.ts';
import type { Change } from '../types.ts';

export { startEtcd, type EtcdServer };

export function testLogger(): Logger {
  const level = process.env['REGISTRY_TEST_LOG'];
  return pino({ level: level !== undefined && level !== '' ? level : 'silent' });
}

export function observer(endpoints: readonly string[]): Etcd3 {
  return new Etcd3({
    hosts: [...endpoints],
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + 5_000 }),
  });
}

let ownerSeq = 0;
export function uniqueOwner(prefix = 'owner'): string {
  return `${prefix}-${process.pid}-${++ownerSeq}-${Math.random().toString(36).slice(2, 8)}`;
}

export function makeRegistry(
  endpoints: readonly string[],
  overrides: Partial<RegistryOptions> = {},
): EtcdRegistry {
  return new EtcdRegistry({
    endpoints,
    ownerId: uniqueOwner(),
    keyRoot: '/',
    leaseTtlSeconds: 3,
    callTimeoutMs: 2_000,
    logger: testLogger(),
    ...overrides,
  });
}

/** Polls `check` every 25 ms until it returns something truthy; fails after `timeoutMs`. */
export async function waitUntil<T>(
  what: string,
  check: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const detail = lastError instanceof Error ? ` (last error: ${lastError.message})` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${detail}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Resolves with the first emission of `event` (after `trigger`, if given), or rejects on timeout. */
export function nextEvent<T>(
  emitter: { once(event: string, fn: (arg: T) => void): unknown; off(event: string, fn: (arg: T) => void): unknown },
  event: string,
  timeoutMs: number,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const fn = (arg: T): void => {
      clearTimeout(timer);
      resolve(arg);
    };
    const timer = setTimeout(() => {
      emitter.off(event, fn);
      reject(new Error(`no '${event}' within ${timeoutMs} ms`));
    }, timeoutMs);
    emitter.once(event, fn);
  });
}

export interface Entry {
  value: string;
  lease: string;
}

/** Everything under a prefix, as seen by the independent client. */
export async function dump(client: Etcd3, prefix: string): Promise<Map<string, Entry>> {
  const res = await client.getAll().prefix(prefix).exec();
  const out = new Map<string, Entry>();
  for (const kv of res.kvs) out.set(kv.key.toString(), { value: kv.value.toString(), lease: String(kv.lease) });
  return out;
}

/** Records every DELETE event under a prefix. */
export async function watchDeletes(client: Etcd3, prefix: string): Promise<{ deletes: string[]; stop(): Promise<void> }> {
  const deletes: string[] = [];
  const watcher = await client.watch().prefix(prefix).create();
  watcher.on('delete', (kv: IKeyValue) => deletes.push(kv.key.toString()));
  watcher.on('error', () => undefined);
  return { deletes, stop: () => watcher.cancel() };
}

/** Writes `n` keys directly (no registry) in 128-op transactions, optionally on a lease. */
export async function putForeign(client: Etcd3, keys: readonly string[], lease = '0', value = 'foreign'): Promise<void> {
  for (let i = 0; i < keys.length; i += 128) {
    await client.kv.txn({
      compare: [],
      success: keys.slice(i, i + 128).map((k) => ({ request_put: { key: Buffer.from(k), value: Buffer.from(value), lease } })),
      failure: [],
    });
  }
}

export function register(key: string, value: string): Change {
  return { action: 'register', key, value, expectedLease: '0', reason: 'test' };
}

export function repair(key: string, value: string, expectedLease: string): Change {
  return { action: 'repair', key, value, expectedLease, reason: 'test' };
}

export function deregister(key: string, value: string, expectedLease: string): Change {
  return { action: 'deregister', key, value, expectedLease, reason: 'test' };
}

export function orphanDelete(key: string, value: string, expectedLease: string): Change {
  return { action: 'orphan-delete', key, value, expectedLease, reason: 'test' };
}

/**
 * A TCP proxy in front of etcd that can cut the network (a partition: etcd keeps running,
 * the registry cannot reach it). While paused, connections are accepted and dropped at once.
 */
export interface Proxy {
  readonly endpoint: string;
  pause(): void;
  resume(): void;
  close(): Promise<void>;
}

export async function startProxy(target: string): Promise<Proxy> {
  const url = new URL(target);
  const sockets = new Set<Socket>();
  let paused = false;
  const server: Server = createServer((down) => {
    if (paused) {
      down.destroy();
      return;
    }
    const up = connect({ host: url.hostname, port: Number(url.port) });
    sockets.add(down);
    sockets.add(up);
    const drop = (): void => {
      down.destroy();
      up.destroy();
      sockets.delete(down);
      sockets.delete(up);
    };
    down.on('error', drop).on('close', drop);
    up.on('error', drop).on('close', drop);
    down.pipe(up);
    up.pipe(down);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('proxy: no address');
  return {
    endpoint: `http://127.0.0.1:${addr.port}`,
    pause() {
      paused = true;
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    resume() {
      paused = false;
    },
    async close() {
      paused = true;
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * Turns etcd auth on: a `root` user (password `rootpw`) and a `registrar` user with readwrite
 * on `/`; returns a root client (the caller closes it).
 */
export async function enableAuth(endpoints: readonly string[], registrarPassword: string): Promise<Etcd3> {
  const setup = new Etcd3({ hosts: [...endpoints] });
  try {
    await setup.role('root').create();
    await setup.user('root').create('rootpw');
    await setup.user('root').addRole('root');
    await setup.role('registrar').create();
    await setup.role('registrar').grant({ permission: 'Readwrite', range: setup.range({ prefix: '/' }) });
    await setup.user('registrar').create(registrarPassword);
    await setup.user('registrar').addRole('registrar');
    await setup.auth.authEnable();
  } finally {
    setup.close();
  }
  return new Etcd3({ hosts: [...endpoints], auth: { username: 'root', password: 'rootpw' } });
}
