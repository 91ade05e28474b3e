// /healthz (the process serves), /readyz (synced and holding a lease), /metrics, and
// /debug/latency (the last changes' stage times, JSON) when given.
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { http } from '../node-http.ts';

export interface Probes {
  /** undefined when ready, else the reason it is not. */
  readonly notReadyReason: () => string | undefined;
}

export class HealthServer {
  readonly #server: Server;

  constructor(probes: Probes, metrics: Registry, debug: { readonly latency?: () => unknown } = {}) {
    this.#server = http.createServer((request, response) => {
      const path = (request.url ?? '/').split('?')[0];
      const reply = (status: number, body: string, type = 'text/plain; charset=utf-8'): void => {
        response.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
        response.end(body);
      };
      if (request.method !== 'GET' && request.method !== 'HEAD') return reply(405, 'method not allowed\n');
      if (path === '/healthz' || path === '/livez') return reply(200, 'ok\n');
      if (path === '/readyz') {
        const reason = probes.notReadyReason();
        return reason === undefined ? reply(200, 'ok\n') : reply(503, `not ready: ${reason}\n`);
      }
      if (path === '/metrics') {
        metrics.metrics().then(
          (text) => reply(200, text, metrics.contentType),
          (error: unknown) => reply(500, `metrics failed: ${String(error)}\n`),
        );
        return;
      }
      if (path === '/debug/latency' && debug.latency !== undefined) return reply(200, JSON.stringify(debug.latency()), 'application/json');
      reply(404, 'not found\n');
    });
  }

  listen(host: string, port: number): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, host, () => {
        this.#server.off('error', reject);
        resolve(this.#server.address() as AddressInfo);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }
}
