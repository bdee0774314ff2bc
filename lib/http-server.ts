// Serving a Hono app over Node's HTTP server: the API and each worker's metrics and health routes.
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';

export interface HttpServer {
  url: string;
  close(): Promise<void>;
}

export async function listen(fetch: (request: Request) => Response | Promise<Response>, at: { host: string; port: number }): Promise<HttpServer> {
  const server = await new Promise<ReturnType<typeof serve>>((resolve, reject) => {
    const s = serve({ fetch, hostname: at.host, port: at.port }, () => { resolve(s); });
    s.once('error', reject);
  });
  // A 200 MB upload or download takes a while; Node's default request timeout would cut it off.
  if ('requestTimeout' in server) server.requestTimeout = 0;
  const { port } = server.address() as AddressInfo;
  const host = at.host.includes(':') ? `[${at.host}]` : at.host;
  return {
    url: `http://${host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        if ('closeIdleConnections' in server) server.closeIdleConnections();
        server.close(() => { resolve(); });
      }),
  };
}
