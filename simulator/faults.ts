// Fault injection: what a flaky engine, proxy or network does to requests, at set rates.
// Set at start-up (--faults / SIM_FAULTS) or at run time through PUT /control/faults.
import { z } from 'zod';

const rate = z.number().min(0).max(1);

export const faultsSchema = z
  .object({
    /** Probability of answering with each HTTP status instead of serving, e.g. {"429": 0.1, "500": 0.05}. */
    errorRates: z.record(z.string().regex(/^[45]\d\d$/), rate).default({}),
    /** Retry-After seconds sent with 429 and 503 answers. */
    retryAfterSeconds: z.number().min(0).default(1),
    /** Probability that a request takes spikeMs longer. */
    spikeRate: rate.default(0),
    spikeMs: z.number().min(0).default(0),
    /** Probability that a request is never answered (until the client gives up). */
    hangRate: rate.default(0),
    /** Probability that the connection is dropped without an answer. */
    dropRate: rate.default(0),
    /** Probability that an answer starts (status, headers, half the body) and then stops coming. */
    stallRate: rate.default(0),
    /** Probability that an answer is cut off half-way by a dropped connection. */
    truncateRate: rate.default(0),
    /** The engine is down: every inference request's connection is reset and /health fails. */
    down: z.boolean().default(false),
  })
  .strict();

export type Faults = z.infer<typeof faultsSchema>;

export const noFaults: Faults = faultsSchema.parse({});

/**
 * Parses "429=0.1,500=0.05,retry-after=2,spike=0.01:1500,hang=0.001,drop=0.002,stall=0.001,truncate=0.001,down".
 * Numbers before "=" are HTTP statuses; the rest are named faults.
 */
export function parseFaultSpec(spec: string): Faults {
  const faults: Faults = { ...noFaults, errorRates: {} };
  for (const part of spec
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '')) {
    const [key = '', value = ''] = part.split('=', 2).map((s) => s.trim());
    const num = (s: string): number => {
      const n = Number(s);
      if (s === '' || !Number.isFinite(n)) throw new Error(`fault "${part}": "${s}" is not a number`);
      return n;
    };
    if (/^[45]\d\d$/.test(key)) faults.errorRates[key] = num(value);
    else if (key === 'retry-after') faults.retryAfterSeconds = num(value);
    else if (key === 'spike') {
      const [r = '', ms = ''] = value.split(':');
      faults.spikeRate = num(r);
      faults.spikeMs = num(ms);
    } else if (key === 'hang') faults.hangRate = num(value);
    else if (key === 'drop') faults.dropRate = num(value);
    else if (key === 'stall') faults.stallRate = num(value);
    else if (key === 'truncate') faults.truncateRate = num(value);
    else if (key === 'down') faults.down = value === '' || value === 'true';
    else
      throw new Error(
        `unknown fault "${key}" (use a status code, retry-after, spike, hang, drop, stall, truncate or down)`,
      );
  }
  return faultsSchema.parse(faults);
}

export type FaultDecision =
  | { kind: 'none'; extraLatencyMs: number; body?: 'stall' | 'truncate' }
  | { kind: 'error'; status: number; extraLatencyMs: number }
  | { kind: 'hang' }
  | { kind: 'drop' };

/** Rolls the dice for one request. Each fault is independent; the first that fires wins. */
export function decideFault(faults: Faults, random: () => number): FaultDecision {
  if (faults.down || random() < faults.dropRate) return { kind: 'drop' };
  if (random() < faults.hangRate) return { kind: 'hang' };
  const extraLatencyMs = random() < faults.spikeRate ? faults.spikeMs : 0;
  for (const [status, p] of Object.entries(faults.errorRates)) {
    if (random() < p) return { kind: 'error', status: Number(status), extraLatencyMs };
  }
  if (random() < faults.stallRate) return { kind: 'none', extraLatencyMs, body: 'stall' };
  if (random() < faults.truncateRate) return { kind: 'none', extraLatencyMs, body: 'truncate' };
  return { kind: 'none', extraLatencyMs };
}
