// An answer that comes before the body ends (a 413, a 401) still reaches a client that is sending it,
// and the connection serves the next request.
import { Hono } from 'hono';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { bodyLimit } from '../../api/middleware/body-limit.js';
import { hearUnreadBody } from '../../api/middleware/unread-body.js';
import { listen, type HttpServer } from '../../lib/http-server.js';
import { exchange } from '../support/raw-http.js';

const MAX = 1024 * 1024;
const DRAIN = 8 * 1024 * 1024;
const DRAIN_MS = 2000;

let server: HttpServer;
let port: number;
beforeAll(async () => {
  // As the API has them: the body heard out around everything, the limit inside.
  const app = new Hono()
    .use(hearUnreadBody({ bytes: DRAIN, ms: DRAIN_MS }), bodyLimit({ maxBytes: MAX }))
    .post('/echo', async (c) => c.text(String((await c.req.arrayBuffer()).byteLength)))
    // As auth does: answered before the body is read.
    .post('/refuse', (c) => c.json({ error: { code: 'invalid_api_key' } }, 401));
  server = await listen(app.fetch, { host: '127.0.0.1', port: 0 }, { idleTimeoutMs: 10_000, onError: () => undefined });
  port = Number(new URL(server.url).port);
});
afterAll(async () => {
  await server.close();
});

/** A second request on the same connection, which closes it after its answer. */
const closing = 'POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\nconnection: close\r\n\r\nabc';

const post = (path: string, body: string): string =>
  `POST ${path} HTTP/1.1\r\nhost: x\r\ncontent-length: ${body.length}\r\n\r\n${body}`;

function chunked(bytes: number, end = true): string {
  const piece = 'p'.repeat(64 * 1024);
  const count = Math.ceil(bytes / piece.length);
  return `${`${piece.length.toString(16)}\r\n${piece}\r\n`.repeat(count)}${end ? '0\r\n\r\n' : ''}`;
}
const postChunked = (path: string, body: string): string =>
  `POST ${path} HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n${body}`;

describe('an answer before the body ends', () => {
  it('a body over the limit: read to its end, 413, and the connection serves the next request', async () => {
    const answers = await exchange(port, post('/echo', 'p'.repeat(2 * MAX)) + closing);
    expect(answers.map((a) => a.status)).toEqual([413, 200]);
    expect(answers[0]?.head).not.toMatch(/connection: close/i);
    expect(JSON.parse(answers[0]?.body ?? '')).toMatchObject({
      error: { code: 'request_too_large', type: 'invalid_request_error' },
    });
    expect(answers[1]?.body).toBe('3');
  });

  it('a chunked body over the limit, whose size shows only as it is read: the same', async () => {
    const answers = await exchange(port, postChunked('/echo', chunked(2 * MAX)) + closing);
    expect(answers.map((a) => a.status)).toEqual([413, 200]);
    expect(answers[1]?.body).toBe('3');
  });

  it('a chunked body within the limit passes through whole', async () => {
    const answers = await exchange(port, postChunked('/echo', chunked(MAX - 1)) + closing);
    expect(answers.map((a) => a.status)).toEqual([200, 200]);
    expect(answers[0]?.body).toBe(String(Math.ceil((MAX - 1) / (64 * 1024)) * 64 * 1024));
  });

  it('a 401 to a body that arrives with a pause: heard out, and the connection serves the next', async () => {
    // Longer than @hono/node-server's own 500 ms drain, which closes the connection when it gives up.
    const request = post('/refuse', 'p'.repeat(MAX));
    const half = Math.floor(request.length / 2);
    const answers = await exchange(port, [request.slice(0, half), request.slice(half) + closing], { pauseMs: 800 });
    expect(answers.map((a) => a.status)).toEqual([401, 200]);
    expect(answers[0]?.head).not.toMatch(/connection: close/i);
  });

  it('a body declared larger than it will read: answered at once, and the connection closed', async () => {
    // Only the headers are sent: the answer must not wait for the 100 MB they promise.
    const answers = await exchange(port, `POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: ${100 * MAX}\r\n\r\n`, {
      closeAfterMs: 1000,
    });
    expect(answers.map((a) => a.status)).toEqual([413]);
    expect(answers[0]?.head).toMatch(/connection: close/i);
  });

  it('a body that stops arriving: waited for at most its time, then answered, and the connection closed', async () => {
    const started = Date.now();
    const answers = await exchange(port, `POST /refuse HTTP/1.1\r\nhost: x\r\ncontent-length: ${MAX}\r\n\r\nabc`, {
      closeAfterMs: DRAIN_MS + 3000,
    });
    expect(answers.map((a) => a.status)).toEqual([401]);
    expect(answers[0]?.head).toMatch(/connection: close/i);
    expect(Date.now() - started).toBeGreaterThanOrEqual(DRAIN_MS - 100);
  });

  it('fetch, still sending, reads its 413 every time', async () => {
    const body = JSON.stringify({ pad: 'p'.repeat(2 * MAX) });
    for (let i = 0; i < 20; i++) {
      const res = await fetch(`${server.url}/echo`, {
        method: 'POST',
        body,
        headers: { 'content-type': 'application/json' },
      });
      expect(res.status).toBe(413);
      await res.text();
    }
  });
});
