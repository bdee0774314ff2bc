// A webhook endpoint for tests: records every request as it arrived (headers and raw body, which
// signature checks need byte for byte) and answers with whatever status the test decides.
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';

export interface Received {
  headers: IncomingHttpHeaders;
  body: string;
  /** What this receiver answered. */
  status: number;
}

export interface BatchEvent {
  id: string;
  object: string;
  type: string;
  created_at: number;
  data: { id: string };
}

export interface WebhookReceiver {
  url: string;
  received: Received[];
  /** Decides the status of each request; defaults to 200. */
  respond: (request: Received, index: number) => number;
  /** Requests whose body is an event about this batch. */
  about(batchId: string): Received[];
  waitFor(predicate: (received: Received[]) => boolean, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export function eventOf(r: Received): BatchEvent {
  return JSON.parse(r.body) as BatchEvent;
}

/** Verifies the Standard Webhooks signature as a receiver would, with the endpoint's secret. */
export function verified(secret: string, r: Received): BatchEvent {
  const headers = Object.fromEntries(
    Object.entries(r.headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(', ') : (v ?? '')]),
  );
  return new Webhook(secret).verify(r.body, headers) as BatchEvent;
}

export async function startWebhookReceiver(): Promise<WebhookReceiver> {
  const receiver: WebhookReceiver = {
    url: '',
    received: [],
    respond: () => 200,
    about: (batchId) => receiver.received.filter((r) => eventOf(r).data.id === batchId),
    waitFor: async (predicate, timeoutMs = 30_000) => {
      const deadline = Date.now() + timeoutMs;
      while (!predicate(receiver.received)) {
        if (Date.now() > deadline)
          throw new Error(
            `the webhook receiver did not see what was expected; it has ${receiver.received.length} requests:\n${receiver.received.map((r) => `${r.status} ${r.body}`).join('\n')}`,
          );
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
      }),
  };
  const server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const request: Received = { headers: req.headers, body: Buffer.concat(parts).toString('utf8'), status: 0 };
      request.status = receiver.respond(request, receiver.received.length);
      receiver.received.push(request);
      res.writeHead(request.status).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  receiver.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/batches`;
  return receiver;
}
