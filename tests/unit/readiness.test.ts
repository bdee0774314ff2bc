// /readyz: every check at once, each with a time limit, and optional checks reported without
// failing readiness (the API without Temporal can still serve reads).
import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';

import { registerOpsRoutes, type ReadinessCheck } from '../../lib/ops.js';

interface Readyz {
  status: string;
  checks: Record<string, { ok: boolean; error?: string }>;
}

async function readyz(checks: ReadinessCheck[]): Promise<{ code: number; body: Readyz }> {
  const app = new Hono();
  registerOpsRoutes(app, { checks, timeoutMs: 200 });
  const res = await app.request('/readyz');
  return { code: res.status, body: (await res.json()) as Readyz };
}

const ok: ReadinessCheck = { name: 'database', check: () => Promise.resolve() };
const down = (name: string, optional = false): ReadinessCheck => ({
  name,
  optional,
  check: () => Promise.reject(new Error(`${name} refused the connection`)),
});
const hung: ReadinessCheck = { name: 'file_store', check: () => new Promise(() => undefined) };

describe('readiness', () => {
  it('is ready when every check passes', async () => {
    expect(await readyz([ok])).toMatchObject({
      code: 200,
      body: { status: 'ready', checks: { database: { ok: true } } },
    });
  });

  it('is not ready, saying why, when a required check fails or hangs', async () => {
    const answer = await readyz([ok, down('temporal'), hung]);
    expect(answer.code).toBe(503);
    expect(answer.body.status).toBe('not_ready');
    expect(answer.body.checks.temporal).toMatchObject({ ok: false, error: 'temporal refused the connection' });
    expect(answer.body.checks.file_store).toMatchObject({ ok: false, error: 'no answer within 200 ms' });
  });

  it('stays ready but degraded when only an optional check fails', async () => {
    const answer = await readyz([ok, down('temporal', true)]);
    expect(answer).toMatchObject({ code: 200, body: { status: 'degraded', checks: { temporal: { ok: false } } } });
    expect((await readyz([down('database'), down('temporal', true)])).code).toBe(503);
  });
});
