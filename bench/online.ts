// Online users of an engine: streamed chat requests arriving at random (a Poisson process) at a given
// rate, each timed to its first streamed event (time to first token), as an interactive client sees it.
import { randomBytes } from 'node:crypto';
import { Agent, request } from 'node:http';

export interface OnlineLoad {
  /** Mean arrivals a second. */
  rate: number;
  seconds: number;
  /** Requests arriving in the first this many seconds are sent but not timed (the engine settling). */
  warmupSeconds?: number;
  model: string;
  maxTokens: number;
  promptChars: number;
  /** How long a request may go without a byte from the engine before the user gives up. */
  timeoutMs: number;
}

export interface OnlineResult {
  /** Time to first token of each request that was answered, ms. */
  ttftMs: number[];
  failed: number;
}

/**
 * `arrivals` draws the gaps between requests: the same seeded generator in two phases gives both the
 * same arrivals (the same bursts), so their quantiles compare the engine's load and not the luck of
 * the draw. Prompts differ in every call all the same, so no phase is served from another's cache.
 */
export async function runOnline(
  engineUrl: string,
  load: OnlineLoad,
  arrivals: () => number = Math.random,
): Promise<OnlineResult> {
  const agent = new Agent({ keepAlive: true });
  const ttftMs: number[] = [];
  let failed = 0;
  const pad = 'y'.repeat(Math.max(0, load.promptChars - 32));
  const one = (i: number, timed: boolean): Promise<void> =>
    new Promise((resolve) => {
      const payload = JSON.stringify({
        model: load.model,
        messages: [{ role: 'user', content: `Online question ${i} ${randomBytes(8).toString('hex')}. ${pad}` }],
        max_tokens: load.maxTokens,
        ignore_eos: true,
        stream: true,
      });
      const sent = performance.now();
      let first: number | undefined;
      // Once per request, whichever of its end or its errors comes first.
      let ended = false;
      const end = (ok: boolean): void => {
        if (ended) return;
        ended = true;
        if (timed) {
          if (ok && first !== undefined) ttftMs.push(first - sent);
          else failed++;
        }
        resolve();
      };
      const req = request(
        `${engineUrl}/v1/chat/completions`,
        {
          method: 'POST',
          agent,
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
        },
        (res) => {
          res.on('data', () => {
            first ??= performance.now();
          });
          res.on('end', () => {
            end(res.statusCode === 200);
          });
          res.on('error', () => {
            end(false);
          });
        },
      );
      req.on('error', () => {
        end(false);
      });
      // An online user gives up: a hung engine ends the run with failures, not a benchmark that never ends.
      req.setTimeout(load.timeoutMs, () => req.destroy(new Error('online request timed out')));
      req.end(payload);
    });
  const pending: Promise<void>[] = [];
  const start = performance.now();
  let at = 0;
  for (let i = 0; ; i++) {
    // Exponential gaps between arrivals: a Poisson process of the given rate.
    at += (-Math.log(1 - arrivals()) / load.rate) * 1000;
    if (at > load.seconds * 1000) break;
    const wait = start + at - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    pending.push(one(i, at >= (load.warmupSeconds ?? 0) * 1000));
  }
  await Promise.all(pending);
  agent.destroy();
  return { ttftMs, failed };
}

/** The q-quantile (0–1) of the values, nearest rank. */
export function quantile(values: number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? Number.NaN;
}
