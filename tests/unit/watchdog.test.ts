// The worker watchdog's decisions, on a worker and a Temporal whose answers the test sets: ready while
// listed as a poller or busy with work that moves; not ready (but alive) while Temporal is away; wedged
// — and so ended — when Temporal answers but lists no poller of it, or every slot is stuck.
import { msNumberToTs } from '@temporalio/common/lib/time.js';
import type { NativeConnection, Worker, WorkerStatus } from '@temporalio/worker';
import { describe, expect, it } from 'vitest';

import { createLogger } from '../../lib/logger.js';
import { Watchdog } from '../../workers/watchdog.js';

const log = createLogger('watchdog-test', { level: 'silent', format: 'json' });

interface World {
  status: Partial<WorkerStatus>;
  /** What Temporal says: pollers listed (with how long ago they polled), or that it does not answer. */
  pollers: { identity: string; agoMs: number }[] | 'down';
  progressAt: number;
}

function watchdogFor(world: World, overrides: { pollStaleMs?: number; stallMs?: number } = {}) {
  const wedged: string[] = [];
  const polling: boolean[] = [];
  const worker = {
    getStatus: () =>
      ({
        runState: 'RUNNING',
        activityPollerState: 'POLLING',
        workflowPollerState: 'POLLING',
        numInFlightActivities: 0,
        ...world.status,
      }) as WorkerStatus,
  } as unknown as Worker;
  const connection = {
    workflowService: {
      // As the server answers: in the enhanced mode, every partition's pollers by version and type.
      describeTaskQueue: (request: { apiMode?: number; taskQueueTypes?: number[] }) => {
        if (world.pollers === 'down') return Promise.reject(new Error('UNAVAILABLE'));
        const now = Date.now();
        const pollers = world.pollers.map((p) => ({
          identity: p.identity,
          lastAccessTime: msNumberToTs(now - p.agoMs),
        }));
        if (request.apiMode === 1)
          return Promise.resolve({
            versionsInfo: { '': { typesInfo: { [String(request.taskQueueTypes?.[0])]: { pollers } } } },
          });
        return Promise.resolve({ pollers });
      },
    },
  } as unknown as NativeConnection;
  const dog = new Watchdog({
    connection,
    namespace: 'default',
    identity: 'me@host:1',
    queues: [{ worker, taskQueue: 'q', workflows: false, activitySlots: 2 }],
    intervalMs: 60_000,
    pollStaleMs: overrides.pollStaleMs ?? 1000,
    stallMs: overrides.stallMs ?? 1000,
    timeoutMs: 500,
    lastProgress: () => world.progressAt,
    log,
    onWedged: (reason) => wedged.push(reason),
    onPolling: (ok) => polling.push(ok),
  });
  const ready = async (): Promise<string | undefined> =>
    dog.check.check().then(
      () => undefined,
      (err: unknown) => (err as Error).message,
    );
  // One look, as the timer would take it.
  const look = (): Promise<void> => (dog as unknown as { evaluate(): Promise<void> }).evaluate();
  return { dog, wedged, polling, ready, look };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('the worker watchdog', () => {
  it('is ready while Temporal lists the worker among the pollers', async () => {
    const { ready, look, wedged } = watchdogFor({
      status: {},
      pollers: [{ identity: 'me@host:1', agoMs: 100 }],
      progressAt: Date.now(),
    });
    expect(await ready()).toBe('starting');
    await look();
    expect(await ready()).toBeUndefined();
    expect(wedged).toEqual([]);
  });

  it('stays alive but not ready while Temporal does not answer', async () => {
    const world: World = { status: {}, pollers: 'down', progressAt: Date.now() };
    const { ready, look, wedged } = watchdogFor(world, { pollStaleMs: 50 });
    await look();
    await sleep(150);
    await look();
    expect(await ready()).toMatch(/Temporal does not answer/);
    expect(wedged).toEqual([]);
  });

  it('gives a worker back its allowance when Temporal returns after an outage longer than it', async () => {
    const world: World = { status: {}, pollers: 'down', progressAt: Date.now() };
    const { ready, look, wedged } = watchdogFor(world, { pollStaleMs: 50 });
    for (let i = 0; i < 4; i++) {
      await look();
      await sleep(60);
    }
    // Back, but its pollers have not polled again yet: not listed, and still not wedged.
    world.pollers = [];
    await look();
    expect(wedged).toEqual([]);
    world.pollers = [{ identity: 'me@host:1', agoMs: 0 }];
    await look();
    expect(await ready()).toBeUndefined();
  });

  it('ends a worker Temporal no longer lists while Temporal itself answers', async () => {
    const world: World = { status: {}, pollers: [{ identity: 'someone-else', agoMs: 0 }], progressAt: Date.now() };
    const { ready, look, wedged } = watchdogFor(world, { pollStaleMs: 100 });
    await look();
    expect(wedged).toEqual([]);
    await sleep(120);
    await look();
    expect(await ready()).toMatch(/lists no poller of this worker/);
    expect(wedged).toEqual([]);
    await sleep(120);
    await look();
    expect(wedged).toHaveLength(1);
    expect(wedged[0]).toMatch(/Temporal has listed no poller of this worker on q/);
  });

  it('counts a worker with every slot busy as polling while its work moves, and ends it once it stops moving', async () => {
    const world: World = { status: { numInFlightActivities: 2 }, pollers: [], progressAt: Date.now() };
    const { ready, look, wedged } = watchdogFor(world, { pollStaleMs: 50, stallMs: 200 });
    await look();
    await sleep(100);
    world.progressAt = Date.now();
    await look();
    // Busy and moving: not listed as a poller (it does not poll), and that is fine.
    expect(await ready()).toBeUndefined();
    await sleep(250);
    await look();
    expect(wedged).toHaveLength(1);
    expect(wedged[0]).toMatch(/every activity slot on q has been busy without progress/);
  });

  it('says after every look whether the worker takes work (gpu_batch_worker_polling)', async () => {
    const world: World = { status: {}, pollers: [{ identity: 'me@host:1', agoMs: 100 }], progressAt: Date.now() };
    const { look, polling } = watchdogFor(world, { pollStaleMs: 1000 });
    await look();
    // Listed by Temporal; then listed only long ago (its pollers stopped), though still within the allowance.
    world.pollers = [{ identity: 'me@host:1', agoMs: 5000 }];
    await look();
    // Every slot busy with work that moves: a full worker does not poll, and is working.
    world.status = { numInFlightActivities: 2 };
    world.progressAt = Date.now();
    await look();
    // Temporal away: its polls fail too.
    world.status = {};
    world.pollers = 'down';
    await look();
    world.pollers = [{ identity: 'me@host:1', agoMs: 0 }];
    await look();
    world.status = { runState: 'STOPPING' };
    await look();
    expect(polling).toEqual([true, false, true, false, true, false]);
  });

  it('says so when the worker is not running, and ends it when a poller failed', async () => {
    const world: World = { status: { runState: 'STOPPING' }, pollers: [], progressAt: Date.now() };
    const { ready, look, wedged } = watchdogFor(world);
    await look();
    expect(await ready()).toMatch(/is stopping/);
    expect(wedged).toEqual([]);
    world.status = { activityPollerState: 'FAILED' };
    await look();
    expect(wedged[0]).toMatch(/poller on q failed/);
  });
});
