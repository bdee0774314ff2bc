import { afterEach, describe, expect, it, vi } from 'vitest';

import { Engine } from '../../activities/engine-client.js';
import { loadConfig } from '../../lib/config.js';
import { createLogger } from '../../lib/logger.js';
import { projectInflightRequests } from '../../lib/metrics.js';
import { Semaphore } from '../../lib/semaphore.js';
import { steerInFlight } from '../../workers/adaptive-inflight.js';

const config = loadConfig({ GPU_ADAPTIVE_INTERVAL_MS: '1000', LOG_LEVEL: 'silent' });
const log = createLogger('test', config.log);
// Without an adaptive limit the engine is never read; only the per-project gauge is published.
const engine = new Engine({
  baseUrl: 'http://127.0.0.1:9',
  apiKey: undefined,
  requestTimeoutMs: 1000,
  connections: 1,
  keepAliveMs: 1000,
  maxResponseBytes: 1024,
});

async function perProject(): Promise<Record<string, number>> {
  const { values } = await projectInflightRequests.get();
  return Object.fromEntries(values.map((v) => [String(v.labels.project), v.value]));
}

describe('the per-project in-flight gauge', () => {
  afterEach(() => {
    vi.useRealTimers();
    projectInflightRequests.reset();
  });

  it('counts what each project holds, and keeps a project at 0 once it holds nothing', async () => {
    vi.useFakeTimers();
    projectInflightRequests.reset();
    const inFlight = new Semaphore(8);
    const stop = steerInFlight(config, engine, inFlight, undefined, log);
    const a1 = await inFlight.acquire(undefined, { key: 'vision-team' });
    await inFlight.acquire(undefined, { key: 'vision-team' });
    const b = await inFlight.acquire(undefined, { key: 'research' });
    await vi.advanceTimersByTimeAsync(1000);
    expect(await perProject()).toEqual({ 'vision-team': 2, research: 1 });

    // Between two chunks research holds nothing: its series reads 0, it does not vanish (a scrape
    // then would mark it stale and the dashboard would show "no data").
    b();
    a1();
    await vi.advanceTimersByTimeAsync(1000);
    expect(await perProject()).toEqual({ 'vision-team': 1, research: 0 });
    await stop();
  });
});
