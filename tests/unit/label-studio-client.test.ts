// The Label Studio client's protocol handling that a Community server cannot show on demand:
// access tokens expiring (they live five minutes), Enterprise's asynchronous imports, and 5xx/429
// retries. A few lines of HTTP server play Label Studio's part of each exchange.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';

import { isPersonalAccessToken, LabelStudio, LabelStudioAuthError } from '../../lib/label-studio.js';

type Handler = (req: IncomingMessage, res: ServerResponse, body: string) => void;
const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

async function serve(handler: Handler): Promise<string> {
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      handler(req, res, body);
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function reply(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

const jwt = (payload: object): string =>
  [
    Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url'),
    Buffer.from(JSON.stringify(payload)).toString('base64url'),
    'sig',
  ].join('.');

describe('the Label Studio client', () => {
  it('tells personal access tokens (JWTs) from legacy tokens', () => {
    expect(isPersonalAccessToken(jwt({ token_type: 'refresh' }))).toBe(true);
    expect(isPersonalAccessToken('4a9f0c1e2b3d')).toBe(false);
    expect(isPersonalAccessToken('a.b.c')).toBe(false);
  });

  it('exchanges a personal access token for access tokens, and renews one that expired', async () => {
    const pat = jwt({ token_type: 'refresh' });
    let issued = 0;
    const seen: string[] = [];
    const url = await serve((req, res, body) => {
      if (req.url === '/api/token/refresh/') {
        expect(JSON.parse(body)).toEqual({ refresh: pat });
        reply(res, 200, { access: `access-${++issued}` });
        return;
      }
      seen.push(req.headers.authorization ?? '');
      // The first access token has "expired" by the second call.
      if (req.headers.authorization === 'Bearer access-1' && seen.length > 1)
        reply(res, 401, { detail: 'Authentication credentials were not provided.' });
      else reply(res, 200, { id: 1, email: 'a@b.c' });
    });
    const client = new LabelStudio({ url, apiKey: pat, timeoutMs: 2000, retries: 1 });
    await client.whoami();
    await client.whoami();
    expect(seen).toEqual(['Bearer access-1', 'Bearer access-1', 'Bearer access-2']);
    await client.close();
  });

  it('gives up with an authentication error when the token is refused', async () => {
    const url = await serve((req, res) => {
      if (req.url === '/api/token/refresh/') reply(res, 401, { detail: 'Token is blacklisted' });
      else reply(res, 401, { detail: 'Invalid token.' });
    });
    await expect(
      new LabelStudio({ url, apiKey: 'legacy-token', timeoutMs: 2000, retries: 3 }).whoami(),
    ).rejects.toBeInstanceOf(LabelStudioAuthError);
    await expect(new LabelStudio({ url, apiKey: jwt({}), timeoutMs: 2000, retries: 3 }).whoami()).rejects.toThrow(
      /Token is blacklisted/,
    );
  });

  it('follows an asynchronous import (Enterprise) until it completes', async () => {
    let polls = 0;
    const url = await serve((req, res) => {
      if (req.method === 'POST' && req.url?.startsWith('/api/projects/3/import')) reply(res, 201, { import: 42 });
      else if (req.url === '/api/projects/3/imports/42/')
        reply(
          res,
          200,
          ++polls < 3 ? { status: 'in_progress' } : { status: 'completed', task_count: 2, task_ids: [10, 11] },
        );
      else reply(res, 404, { detail: 'no' });
    });
    const client = new LabelStudio({ url, apiKey: 'token', timeoutMs: 2000, retries: 0 });
    expect(await client.importTasks(3, [{ data: {} }, { data: {} }], 10)).toEqual({ count: 2, taskIds: [10, 11] });
    expect(polls).toBe(3);
  });

  it('retries 5xx and 429 (after Retry-After), and reports a 4xx at once', async () => {
    let calls = 0;
    const url = await serve((req, res) => {
      calls++;
      if (calls === 1) reply(res, 503, { detail: 'busy' });
      else if (calls === 2) reply(res, 429, { detail: 'slow down' }, { 'retry-after': '0.05' });
      else if (req.url === '/api/projects/9/') reply(res, 404, { detail: 'No Project matches the given query.' });
      else reply(res, 200, { id: 1 });
    });
    const client = new LabelStudio({ url, apiKey: 'token', timeoutMs: 2000, retries: 3 });
    expect(await client.whoami()).toEqual({ id: 1 });
    expect(calls).toBe(3);
    await expect(client.getProject(9)).rejects.toMatchObject({
      status: 404,
      retryable: false,
      message: expect.stringContaining('No Project matches') as unknown,
    });
  });
});
