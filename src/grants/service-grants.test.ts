import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { Writable } from 'node:stream';
import type { NamespaceEvent } from '../source/namespace-source.ts';
import { ServiceGrants, type NamespaceFeed } from './service-grants.ts';
import type { GrantsMode } from './grants.ts';

class Feed implements NamespaceFeed {
  listener: ((event: NamespaceEvent) => void) | undefined;
  started = 0;
  listed: Promise<void> = new Promise(() => undefined);
  onChange(listener: (event: NamespaceEvent) => void): void {
    this.listener = listener;
  }
  start(): Promise<void> {
    this.started++;
    return this.listed;
  }
  stop(): void {}
}

function make(mode: GrantsMode, feed = new Feed()) {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({ write: (chunk: Buffer, _encoding, callback) => { lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>); callback(); } });
  const grants = new ServiceGrants({ mode, annotation: 'x.io/allowed-services', staticGrants: new Map([['platform', ['*']]]), namespaces: feed, logger: pino({ level: 'info' }, sink) });
  const changed: string[] = [];
  grants.onChange((namespace) => changed.push(namespace));
  return { grants, feed, changed, lines };
}

describe('ServiceGrants', () => {
  it('strict waits for the namespace list; open does not; off never starts the source', async () => {
    const strict = make('strict');
    let done = false;
    void strict.grants.start().then(() => { done = true; });
    await new Promise((resolve) => setTimeout(resolve, 10));
    assert.equal(done, false, 'strict waits for the list');
    const open = make('open');
    await open.grants.start();
    assert.equal(open.feed.started, 1);
    const off = make('off');
    await off.grants.start();
    assert.equal(off.feed.started, 0);
    assert.equal(off.feed.listener, undefined, 'off does not even subscribe');
  });

  it('reports changed namespaces only, and logs ignored annotation entries', () => {
    const { grants, feed, changed, lines } = make('strict');
    feed.listener?.({ type: 'upsert', name: 'team-a', value: 'search, bad/x' });
    feed.listener?.({ type: 'upsert', name: 'team-a', value: 'search, bad/x' });
    feed.listener?.({ type: 'delete', name: 'team-b' });
    feed.listener?.({ type: 'delete', name: 'team-a' });
    assert.deepEqual(changed, ['team-a', 'team-a']);
    const warning = lines.find((l) => l['msg'] === 'namespace grants annotation has invalid entries; they are ignored');
    assert.deepEqual(warning?.['problems'], ['"bad/x" is not a service name: it may contain only letters, digits, \'-\', \'_\' and \'.\'; ignored']);
    assert.equal(grants.status('team-a', 'search'), 'unknown');
    assert.equal(grants.status('platform', 'anything'), 'granted');
  });
});
