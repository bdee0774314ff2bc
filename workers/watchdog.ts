// Is this process's Temporal worker really working? The SDK keeps a worker object alive even when it
// no longer takes tasks: every activity slot held by work that makes no progress, or pollers that
// Temporal no longer sees. The watchdog asks both sides — the worker's own status and Temporal's list
// of pollers on each task queue — makes /readyz say so, and ends the process when the worker is
// wedged while Temporal itself answers, so that its supervisor starts a fresh one.
import { tsToMs } from '@temporalio/common/lib/time.js';
import proto from '@temporalio/proto';
import type { ActivityInterceptorsFactory, NativeConnection, Worker } from '@temporalio/worker';

import { withTimeout } from '../lib/abortable.js';
import type { Logger } from '../lib/logger.js';
import type { ReadinessCheck } from '../lib/ops.js';

export interface WatchedQueue {
  worker: Worker;
  taskQueue: string;
  /** Workflow tasks too (orchestrator, import worker), or only activities (GPU worker). */
  workflows: boolean;
  /** The worker's maxConcurrentActivityTaskExecutions: all of them busy means it polls for no more. */
  activitySlots: number;
}

export interface WatchdogOptions {
  connection: NativeConnection;
  namespace: string;
  /** The identity the workers were created with, as Temporal lists it among pollers. */
  identity: string;
  queues: WatchedQueue[];
  /** How often to look. */
  intervalMs: number;
  /** Not listed as a poller (while not busy) for this long: not ready; for twice this long: exit. */
  pollStaleMs: number;
  /** Every activity slot busy with no progress for this long: not ready, and exit. */
  stallMs: number;
  /** Timeout of each question to Temporal. */
  timeoutMs: number;
  log: Logger;
  /** When an activity of this process last got something done (a request finished, a page written). */
  lastProgress: () => number;
  /** Called once with the reason when the worker is wedged; the process should exit. */
  onWedged: (reason: string) => void;
  /**
   * After every look: whether the worker takes work (on every queue listed as a poller, or busy with work
   * that moves). Exported as gpu_batch_worker_polling, which the no-pollers alert watches.
   */
  onPolling?: (polling: boolean) => void;
}

/**
 * Progress as the watchdog sees it: every activity that ends (in success or failure) counts, so a
 * worker whose slots stay full of activities that come and go is busy, not wedged.
 */
export function progressInterceptor(progress: () => void): ActivityInterceptorsFactory {
  return () => ({
    inbound: {
      execute: async (input, next) => {
        try {
          return await next(input);
        } finally {
          progress();
        }
      },
    },
  });
}

/** Where activities report that they got something done; the watchdog reads it. */
export class ProgressClock {
  at = Date.now();

  readonly note = (): void => {
    this.at = Date.now();
  };
}

// A CommonJS package: its namespace comes through the default export under ES modules.
const { TaskQueueType, DescribeTaskQueueMode } = proto.temporal.api.enums.v1;
const GRPC_INVALID_ARGUMENT = 3;
const GRPC_UNIMPLEMENTED = 12;

export class Watchdog {
  private readonly lastPolling = new Map<string, number>();
  private readonly busySince = new Map<string, number>();
  private problem: string | undefined = 'starting';
  private enhanced = true;
  private timer: NodeJS.Timeout | undefined;
  private wedged = false;

  constructor(private readonly options: WatchdogOptions) {
    for (const q of options.queues) this.lastPolling.set(q.taskQueue, Date.now());
  }

  /** The readiness check: fails with the reason while the worker is not working. */
  readonly check: ReadinessCheck = {
    name: 'temporal_worker',
    check: () => (this.problem === undefined ? Promise.resolve() : Promise.reject(new Error(this.problem))),
  };

  start(): void {
    const tick = (): void => {
      this.evaluate()
        .catch((err: unknown) => {
          this.problem = `the watchdog could not look: ${(err as Error).message}`;
          this.options.onPolling?.(false);
        })
        .finally(() => {
          if (!this.wedged) this.timer = setTimeout(tick, this.options.intervalMs);
        });
    };
    tick();
  }

  stop(): void {
    clearTimeout(this.timer);
    this.wedged = true;
  }

  /** Whether these pollers include ours, recently. */
  private ours(pollers: proto.temporal.api.taskqueue.v1.IPollerInfo[]): boolean {
    const now = Date.now();
    return pollers.some(
      (p) =>
        p.identity === this.options.identity &&
        p.lastAccessTime !== undefined &&
        p.lastAccessTime !== null &&
        now - tsToMs(p.lastAccessTime) < this.options.pollStaleMs,
    );
  }

  /**
   * Whether Temporal lists a poller of ours on the queue for this task type, or undefined if Temporal
   * does not answer. Asked in the enhanced mode, which merges every partition of the queue (a cluster
   * splits each queue in four by default, and a poll lands on one of them); a server without it is
   * asked the plain way, which lists the root partition's pollers.
   */
  private async listed(
    taskQueue: string,
    type: proto.temporal.api.enums.v1.TaskQueueType,
  ): Promise<boolean | undefined> {
    const { connection, namespace, timeoutMs } = this.options;
    const describe = connection.workflowService.describeTaskQueue.bind(connection.workflowService);
    try {
      if (this.enhanced) {
        try {
          const res = await withTimeout(
            describe({
              namespace,
              taskQueue: { name: taskQueue },
              apiMode: DescribeTaskQueueMode.DESCRIBE_TASK_QUEUE_MODE_ENHANCED,
              versions: { unversioned: true },
              taskQueueTypes: [type],
              reportPollers: true,
            }),
            timeoutMs,
          );
          return this.ours(Object.values(res.versionsInfo).flatMap((v) => v.typesInfo?.[String(type)]?.pollers ?? []));
        } catch (err) {
          const code = (err as { code?: unknown }).code;
          if (code !== GRPC_INVALID_ARGUMENT && code !== GRPC_UNIMPLEMENTED) throw err;
          this.enhanced = false;
        }
      }
      return this.ours(
        (await withTimeout(describe({ namespace, taskQueue: { name: taskQueue }, taskQueueType: type }), timeoutMs))
          .pollers,
      );
    } catch {
      return undefined;
    }
  }

  /** Slots that only just filled are not stalled, however long ago the last progress was. */
  private lastBusySince(taskQueue: string, now: number): number {
    const since = this.busySince.get(taskQueue) ?? now;
    this.busySince.set(taskQueue, since);
    return since;
  }

  private async evaluate(): Promise<void> {
    const now = Date.now();
    const problems: string[] = [];
    let fatal: string | undefined;
    // Stays true only if every queue is polled, or full with work that moves.
    let polling = true;
    for (const q of this.options.queues) {
      const status = q.worker.getStatus();
      if (status.runState !== 'RUNNING') {
        problems.push(`the worker on ${q.taskQueue} is ${status.runState.toLowerCase()}`);
        polling = false;
        continue;
      }
      if (status.activityPollerState === 'FAILED' || (q.workflows && status.workflowPollerState === 'FAILED')) {
        fatal = `the worker's poller on ${q.taskQueue} failed`;
        polling = false;
        continue;
      }
      const busy = status.numInFlightActivities >= q.activitySlots;
      if (!busy) this.busySince.delete(q.taskQueue);
      if (busy) {
        // A worker with every slot taken does not poll; that is right while its work moves.
        this.lastPolling.set(q.taskQueue, now);
        const still = now - Math.max(this.options.lastProgress(), this.lastBusySince(q.taskQueue, now));
        if (still > this.options.stallMs) {
          fatal = `every activity slot on ${q.taskQueue} has been busy without progress for ${Math.round(still / 1000)} s`;
          polling = false;
        }
        continue;
      }
      const types = q.workflows
        ? [TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY]
        : [TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY];
      const answers = await Promise.all(types.map((t) => this.listed(q.taskQueue, t)));
      if (answers.some((a) => a === undefined)) {
        // Temporal is away: say so, but a restart would not bring it back; and its absence is not the
        // worker's (once Temporal is back, pollers get a fresh allowance to be seen again).
        problems.push(`Temporal does not answer about ${q.taskQueue}`);
        this.lastPolling.set(q.taskQueue, now);
        // Its polls fail too: it takes no work, whoever is to blame (every worker says so at once then).
        polling = false;
        continue;
      }
      if (answers.every((a) => a === true)) {
        this.lastPolling.set(q.taskQueue, now);
        continue;
      }
      polling = false;
      const absent = now - (this.lastPolling.get(q.taskQueue) ?? now);
      if (absent > 2 * this.options.pollStaleMs)
        fatal = `Temporal has listed no poller of this worker on ${q.taskQueue} for ${Math.round(absent / 1000)} s`;
      else if (absent > this.options.pollStaleMs)
        problems.push(`Temporal lists no poller of this worker on ${q.taskQueue} (for ${Math.round(absent / 1000)} s)`);
    }
    if (fatal !== undefined) problems.unshift(fatal);
    this.problem = problems.length === 0 ? undefined : problems.join('; ');
    this.options.onPolling?.(polling);
    if (fatal !== undefined && !this.wedged) {
      this.wedged = true;
      this.options.log.error({ reason: fatal }, 'the Temporal worker is wedged; exiting so that it is restarted');
      this.options.onWedged(fatal);
    }
  }
}
