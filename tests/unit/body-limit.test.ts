// The bound on bodies read whole: a refused body is still heard out, so the client reads its 413.
import { Hono } from 'hono';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { bodyLimit } from '../../api/middleware/body-limit.js';
import { listen, type HttpServer } from '../../lib/http-server.js';
import { exchange } from '../support/raw-http.js';

const MAX = 1024 * 1024;
const DRAIN = 8 * 1024 * 1024;

let server: HttpServer;
let port: number;
beforeAll(async () => {
  const app = new Hono()
    .use(bodyLimit({ maxBytes: MAX, drainBytes: DRAIN }))
    .post('/echo', async (c) => c.text(String((await c.req.arrayBuffer()).byteLength)))
    // As auth does: answered before the body is read.
    .post('/refuse', (c) => c.json({ error: { code: 'invalid_api_key' } }, 401));
  server = await listen(app.fetch, { host: '127.0.0.1', port: 0 }, { idleTimeoutMs: 5000, onError: () => undefined });
  port = Number(new URL(server.url).port);
});
afterAll(async () => {
  await server.close();
});

/** The answers to `payload`, as `{heads, bodies}`. */
async function send(payload: string, closeAfterMs?: number): Promise<{ heads: string[]; bodies: string[] }> {
  const answers = await exchange(port, payload, closeAfterMs === undefined ? {} : { closeAfterMs });
  return { heads: answers.map((a) => a.head), bodies: answers.map((a) => a.body) };
}

const closing = 'POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\nconnection: close\r\n\r\nabc';

function chunked(bytes: number): string {
  const piece = 'p'.repeat(64 * 1024);
  const count = Math.ceil(bytes / piece.length);
  return `${`${piece.length.toString(16)}\r\n${piece}\r\n`.repeat(count)}0\r\n\r\n`;
}

describe('bodyLimit', () => {
  it('reads a refused body to its end, answers 413, and the connection serves the next request', async () => {
    const body = 'p'.repeat(2 * MAX);
    const { heads, bodies } = await send(
      `POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: ${body.length}\r\n\r\n${body}${closing}`,
    );
    expect(heads.map((h) => h.slice(0, 12))).toEqual(['HTTP/1.1 413', 'HTTP/1.1 200']);
    expect(heads[0]).not.toMatch(/connection: close/i);
    expect(JSON.parse(bodies[0] ?? '')).toMatchObject({
      error: { code: 'request_too_large', type: 'invalid_request_error' },
    });
    expect(bodies[1]).toBe('3');
  });

  it('does the same for a chunked body, whose size shows only as it is read', async () => {
    const { heads, bodies } = await send(
      `POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n${chunked(2 * MAX)}${closing}`,
    );
    expect(heads.map((h) => h.slice(0, 12))).toEqual(['HTTP/1.1 413', 'HTTP/1.1 200']);
    expect(bodies[1]).toBe('3');
  });

  it('leaves a body within the limit to whatever answers without reading it, and the connection serves the next', async () => {
    const body = 'p'.repeat(MAX);
    const { heads, bodies } = await send(
      `POST /refuse HTTP/1.1\r\nhost: x\r\ncontent-length: ${body.length}\r\n\r\n${body}${closing}`,
    );
    expect(heads.map((h) => h.slice(0, 12))).toEqual(['HTTP/1.1 401', 'HTTP/1.1 200']);
    expect(bodies[1]).toBe('3');
  });

  it('passes a chunked body within the limit through whole', async () => {
    const { heads, bodies } = await send(
      `POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n${chunked(MAX - 1)}`,
    );
    expect(heads[0]?.slice(0, 12)).toBe('HTTP/1.1 200');
    expect(bodies[0]).toBe(String(Math.ceil((MAX - 1) / (64 * 1024)) * 64 * 1024));
  });

  it('answers a body declared larger than it will read at once, and closes the connection', async () => {
    // Only the headers are sent: the answer must not wait for the 100 MB they promise.
    const { heads } = await send(`POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: ${100 * MAX}\r\n\r\n`, 4000);
    expect(heads.length).toBe(1);
    expect(heads[0]?.slice(0, 12)).toBe('HTTP/1.1 413');
    expect(heads[0]).toMatch(/connection: close/i);
  });

  it('stops reading a chunked body that goes on past the bound, and closes the connection', async () => {
    const { heads } = await send(
      `POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n${chunked(2 * DRAIN).slice(0, -5)}`,
      4000,
    );
    expect(heads[0]?.slice(0, 12)).toBe('HTTP/1.1 413');
    expect(heads[0]).toMatch(/connection: close/i);
  });

  it('lets fetch, still sending, read its 413 every time', async () => {
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
