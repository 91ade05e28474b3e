// The Toxiproxy harness against a real toxiproxy-server and a loopback TCP echo upstream:
// each fault the suite uses does to a connection what its name says.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { Toxiproxy, type Proxy } from './toxiproxy.ts';

let toxiproxy: Toxiproxy;
let echo: Server;
let proxy: Proxy;

before(async () => {
  echo = createServer((socket) => {
    // Resets are the point of some cases: the upstream side sees them too.
    socket.on('error', () => socket.destroy());
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
  const address = echo.address();
  assert.ok(address !== null && typeof address === 'object');
  toxiproxy = await Toxiproxy.start();
  proxy = await toxiproxy.createProxy('echo', `127.0.0.1:${address.port}`);
});

after(async () => {
  await toxiproxy?.stop();
  echo?.close();
});

function open(): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(proxy.port, '127.0.0.1', () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Sends `text`; resolves with the echo and its round-trip ms, or with the socket's fate. */
function roundTrip(socket: Socket, text: string, timeoutMs: number): Promise<{ kind: 'echo'; ms: number } | { kind: 'timeout' } | { kind: 'closed' }> {
  return new Promise((resolve) => {
    // Closed already (e.g. while a fault was being removed).
    if (socket.closed || socket.readableEnded) {
      resolve({ kind: 'closed' });
      return;
    }
    const started = performance.now();
    let received = '';
    const timer = setTimeout(() => finish({ kind: 'timeout' }), timeoutMs);
    const onData = (chunk: Buffer): void => {
      received += chunk.toString();
      if (received.length >= text.length) finish({ kind: 'echo', ms: performance.now() - started });
    };
    const onClose = (): void => finish({ kind: 'closed' });
    function finish(result: { kind: 'echo'; ms: number } | { kind: 'timeout' } | { kind: 'closed' }): void {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.off('error', onClose);
      resolve(result);
    }
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.once('error', onClose);
    socket.write(text);
  });
}

describe('toxiproxy harness', () => {
  it('passes data through, drops it in a blackhole, and resets connections at the heal', async () => {
    const socket = await open();
    assert.equal((await roundTrip(socket, 'hello', 2_000)).kind, 'echo');
    await proxy.blackhole();
    assert.equal((await roundTrip(socket, 'lost', 500)).kind, 'timeout');
    await proxy.heal();
    assert.equal((await roundTrip(socket, 'after', 2_000)).kind, 'closed', 'the connection with a hole in its stream is reset');
    const fresh = await open();
    assert.equal((await roundTrip(fresh, 'again', 2_000)).kind, 'echo');
    fresh.destroy();
  });

  it('adds latency, and reset_peer resets connections', async () => {
    const socket = await open();
    await proxy.addToxic('slow', { type: 'latency', attributes: { latency: 300, jitter: 0 } });
    const slow = await roundTrip(socket, 'slow', 3_000);
    assert.ok(slow.kind === 'echo' && slow.ms >= 280, `delayed round trip (${JSON.stringify(slow)})`);
    await proxy.clearToxics();
    await proxy.addToxic('reset', { type: 'reset_peer', attributes: { timeout: 100 } });
    assert.equal((await roundTrip(await open(), 'x', 2_000)).kind, 'closed');
    await proxy.clearToxics();
    socket.destroy();
  });
});
