// Steering a GPU worker's in-flight limit by its engine: every GPU_ADAPTIVE_INTERVAL_MS the engine's
// /metrics are read and the limit (lib/adaptive-limit.ts) moves; the shared semaphore follows, so
// chunks keep sending at the new limit without stopping (a lower limit takes permits back only as
// requests finish). The limit and its moves are metrics; each move is logged.
import type { Engine } from '../activities/engine-client.js';
import { AdaptiveLimit, NO_READING, type LimitChange } from '../lib/adaptive-limit.js';
import type { Config } from '../lib/config.js';
import type { Logger } from '../lib/logger.js';
import { inflightLimit, inflightLimitChangesTotal, projectInflightRequests } from '../lib/metrics.js';
import { safeText } from '../lib/sanitize.js';
import type { Semaphore } from '../lib/semaphore.js';

/** The limit (none with GPU_ADAPTIVE_INFLIGHT=false), made before the engine client, which reports its overloads to it. */
export function adaptiveLimit(config: Config, inFlight: Semaphore, log: Logger): AdaptiveLimit | undefined {
  const { gpu } = config;
  const labels = { gpu: gpu.index };
  inflightLimit.set(labels, gpu.maxInFlight);
  if (!gpu.adaptive) return undefined;
  const limit = new AdaptiveLimit(
    {
      floor: Math.min(gpu.minInFlight, gpu.maxInFlight),
      ceiling: gpu.maxInFlight,
      increase: gpu.adaptiveIncrease,
      decrease: gpu.adaptiveDecrease,
      maxWaiting: gpu.adaptiveMaxWaiting,
      maxKvUsage: gpu.adaptiveMaxKvUsage,
      ttftTargetMs: gpu.adaptiveTtftMs,
      itlTargetMs: gpu.adaptiveItlMs,
      latencyHeadroom: gpu.adaptiveLatencyHeadroom,
      latencyReadings: gpu.adaptiveLatencyReadings,
      holdMs: gpu.adaptiveHoldMs,
    },
    (value: number, why: LimitChange) => {
      inFlight.setPermits(value);
      inflightLimit.set(labels, value);
      inflightLimitChangesTotal.inc({ ...labels, reason: why });
      // Growth is routine and frequent; a cut is worth a line at info.
      if (why === 'increase') log.debug({ limit: value, why }, 'in-flight limit moved');
      else log.info({ limit: value, why, inUse: inFlight.inUse }, 'in-flight limit cut');
    },
  );
  // Where it starts (the floor, when steered by time to first token).
  inFlight.setPermits(limit.limit);
  inflightLimit.set(labels, limit.limit);
  return limit;
}

/**
 * Reads the engine's load on a clock and feeds the limit; also publishes each project's requests in
 * flight. A reading that fails is said once until one succeeds, and counts as a reading without
 * figures: the answers' signals (429, 503, timeouts) still cut the limit, and it grows back after the
 * hold as usual, so an engine without readable metrics does not pin it at the floor. Returns the
 * function that stops it (after a reading under way).
 */
export function steerInFlight(
  config: Config,
  engine: Engine,
  inFlight: Semaphore,
  limit: AdaptiveLimit | undefined,
  log: Logger,
): () => Promise<void> {
  const every = config.gpu.adaptiveIntervalMs;
  let failing = false;
  let reading: Promise<void> | undefined;
  const read = async (steered: AdaptiveLimit): Promise<void> => {
    try {
      const load = await engine.load(Math.max(every, config.metrics.readyTimeoutMs));
      steered.observe(load, inFlight.inUse);
      if (failing) log.info('reading the engine metrics again');
      failing = false;
    } catch (err) {
      if (!failing)
        log.warn(
          { err: (err as Error).message },
          "cannot read the engine's /metrics; the limit moves on its answers and the hold alone",
        );
      failing = true;
      steered.observe(NO_READING, inFlight.inUse);
    }
  };
  // A project that held requests here stays at 0 once it holds none, rather than vanishing: a scrape
  // between two chunks would otherwise mark its series stale, and a panel or alert would read "no data"
  // for "nothing in flight". Projects are the fairness keys of registered projects, so the set is small.
  const seen = new Set<string>();
  const tick = (): void => {
    const holders = inFlight.holders();
    for (const project of holders.keys()) seen.add(project);
    for (const project of seen)
      projectInflightRequests.set({ project: safeText(project, 64) }, holders.get(project) ?? 0);
    if (limit === undefined || reading !== undefined) return;
    reading = read(limit).finally(() => {
      reading = undefined;
    });
  };
  const timer = setInterval(tick, every);
  return async () => {
    clearInterval(timer);
    await reading;
  };
}
