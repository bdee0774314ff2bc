// The HTTP server under the API and every ops server: a client that stops sending cannot hold a connection.
import { connect } from 'node:net';
import { Hono } from 'hono';
import { afterEach, describe, expect, it } from 'vitest';

import { listen, type HttpServer } from '../../lib/http-server.js';

let server: HttpServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

describe('listen', () => {
  it('closes a connection whose body stops arriving, and still serves ordinary requests', async () => {
    const app = new Hono().post('/echo', async (c) => c.text(await c.req.text()));
    const errors: Error[] = [];
    server = await listen(
      app.fetch,
      { host: '127.0.0.1', port: 0 },
      { idleTimeoutMs: 300, onError: (err) => errors.push(err) },
    );
    const { port } = new URL(server.url);

    const res = await fetch(`${server.url}/echo`, { method: 'POST', body: 'hello' });
    expect(await res.text()).toBe('hello');

    // Headers promise 100 bytes; 10 come, then nothing.
    const socket = connect(Number(port), '127.0.0.1');
    socket.on('error', () => undefined);
    const closed = new Promise<number>((resolve) => {
      const started = Date.now();
      socket.on('close', () => {
        resolve(Date.now() - started);
      });
    });
    socket.write('POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n0123456789');
    const waited = await Promise.race([
      closed,
      new Promise<number>((resolve) =>
        setTimeout(() => {
          resolve(-1);
        }, 5000),
      ),
    ]);
    socket.destroy();
    expect(waited).toBeGreaterThan(0);
    expect(waited).toBeLessThan(5000);
    expect(errors).toEqual([]);
  });
});
