// The baseline: a minimal client that sends the same requests straight to the engine at the same
// concurrency, with nothing in between. The system's overhead is measured against this.
import { Agent } from 'node:http';

interface Line {
  url: string;
  body: unknown;
}

export async function runDirect(
  engineUrl: string,
  lines: string[],
  concurrency: number,
): Promise<{ seconds: number; ok: number; failed: number }> {
  const requests = lines.map((l) => JSON.parse(l) as Line);
  // A keep-alive pool as large as the concurrency, like any serious client.
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const { request } = await import('node:http');
  const send = (line: Line): Promise<number> =>
    new Promise((resolve, reject) => {
      const payload = JSON.stringify(line.body);
      const req = request(
        `${engineUrl}${line.url}`,
        {
          method: 'POST',
          agent,
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
        },
        (res) => {
          res.resume();
          res.on('end', () => {
            resolve(res.statusCode ?? 0);
          });
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
  let next = 0;
  let ok = 0;
  let failed = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < requests.length) {
        const line = requests[next++];
        if (line === undefined) break;
        if ((await send(line)) === 200) ok++;
        else failed++;
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  agent.destroy();
  return { seconds, ok, failed };
}
