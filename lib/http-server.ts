// Serving a Hono app over Node's HTTP server: the API and each worker's metrics and health routes.
import { STATUS_CODES } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { serve } from '@hono/node-server';

export interface HttpServer {
  url: string;
  close(): Promise<void>;
}

/**
 * Requests Node's parser refuses before any route sees them (headers over 16 KB, a malformed request
 * line) still get an answer in OpenAI's error shape, not a bare status line.
 */
function answerUnparsable(err: Error & { code?: string }, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
  const message =
    status === 431
      ? 'The request headers are too large (at most 16 KB in all).'
      : status === 408
        ? 'The request took too long to arrive.'
        : 'The request could not be parsed as HTTP.';
  const body = JSON.stringify({
    error: {
      message,
      type: 'invalid_request_error',
      param: null,
      code: status === 431 ? 'headers_too_large' : 'invalid_request',
    },
  });
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}

export interface ListenOptions {
  /**
   * A connection on which no byte has moved either way for this long is closed: a client that
   * trickles a body (or stops reading an answer) cannot hold the server's memory indefinitely.
   */
  idleTimeoutMs: number;
  /** Errors of the listening server after it started (accept failing when out of descriptors, say). */
  onError: (err: Error) => void;
}

export async function listen(
  fetch: (request: Request) => Response | Promise<Response>,
  at: { host: string; port: number },
  options: ListenOptions,
): Promise<HttpServer> {
  const server = await new Promise<ReturnType<typeof serve>>((resolve, reject) => {
    const s = serve({ fetch, hostname: at.host, port: at.port }, () => {
      resolve(s);
    });
    s.once('error', reject);
  });
  server.on('error', options.onError);
  // A 200 MB upload or download takes a while; Node's default request timeout would cut it off.
  // Idleness is bounded instead (a socket timeout with no listener destroys the socket).
  if ('requestTimeout' in server) server.requestTimeout = 0;
  server.setTimeout(options.idleTimeoutMs);
  server.on('clientError', answerUnparsable);
  const { port } = server.address() as AddressInfo;
  const host = at.host.includes(':') ? `[${at.host}]` : at.host;
  return {
    url: `http://${host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        if ('closeIdleConnections' in server) server.closeIdleConnections();
        server.close(() => {
          resolve();
        });
      }),
  };
}
