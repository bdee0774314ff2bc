// Workflow unit tests: the workflows on Temporal's time-skipping test server, their activities
// replaced by plain functions, no database, engine or Label Studio. Timers and retry backoff pass
// in no real time, so expiry and retry races are decided by the test, not by the machine's speed.
import { createRequire } from 'node:module';
import { encodeSearchAttributeIndexedValueType } from '@temporalio/common/lib/search-attributes.js';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, Worker, type WorkflowBundle } from '@temporalio/worker';
import { afterEach, beforeAll, beforeEach } from 'vitest';

import { ensureTemporalTestServer } from '../../dev/temporal-test-server.js';
import { loadConfig, type Config } from '../../lib/config.js';
import { createLogger } from '../../lib/logger.js';
import { ALL_SEARCH_ATTRIBUTES } from '../../workflows/search-attributes.js';

const require = createRequire(import.meta.url);

/** Config as the API builds workflow inputs from it; every task queue is the test's one queue. */
export function testConfig(taskQueue: string): Config {
  const config = loadConfig({ LOG_LEVEL: 'warn' });
  return {
    ...config,
    temporal: { ...config.temporal, orchestratorTaskQueue: taskQueue },
    curation: { ...config.curation, taskQueue },
  };
}

export async function startTimeSkippingEnv(): Promise<TestWorkflowEnvironment> {
  const config = loadConfig({ ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn' });
  // The global setup has installed it already; a file run on its own installs it here.
  const log = createLogger('test-server', config.log);
  const server = await ensureTemporalTestServer(config.paths.toolsDir, log);
  const env = await TestWorkflowEnvironment.createTimeSkipping({
    server: { executable: { type: 'existing-path', path: server } },
  });
  // The workflows set these; the test server, like any cluster, refuses attributes it does not know. (It
  // cannot list them, so lib/temporal.ts's ensureSearchAttributes, which lists first, does not serve here.)
  await env.connection.operatorService.addSearchAttributes({
    namespace: env.namespace ?? 'default',
    searchAttributes: Object.fromEntries(
      ALL_SEARCH_ATTRIBUTES.map((key) => [key.name, encodeSearchAttributeIndexedValueType(key.type) ?? 0]),
    ),
  });
  return env;
}

/**
 * A time-skipping test server of its own for each test (a second to start), so that a race left
 * unsettled in one test (a task no worker takes holds the server's clock) cannot slow or decide another;
 * the workflow bundle is made once for the file.
 */
export function serverPerTest(): { readonly env: TestWorkflowEnvironment; readonly workflowBundle: WorkflowBundle } {
  const state = {} as { env: TestWorkflowEnvironment; workflowBundle: WorkflowBundle };
  beforeAll(async () => {
    state.workflowBundle = await bundleWorkflows();
  });
  beforeEach(async () => {
    state.env = await startTimeSkippingEnv();
  });
  afterEach(async () => {
    await state.env.teardown();
  });
  return state;
}

const silent = { trace() {}, debug() {}, info() {}, warn() {}, error() {}, log() {} };

/** The workflows of workflows/index.ts in `root` (this checkout by default, or an older commit's). */
export async function bundleWorkflows(root?: string): Promise<WorkflowBundle> {
  const workflowsPath = root === undefined ? require.resolve('../../workflows/index.ts') : `${root}/workflows/index.ts`;
  return bundleWorkflowCode({ workflowsPath, logger: silent });
}

/** Activities by name, as the workers register them; a test passes only those its workflow calls. */
export type ActivityMocks = Record<string, (...args: never[]) => unknown>;

/** Runs `body` while a worker with these activities serves `taskQueue`. */
export async function withWorker<T>(
  env: TestWorkflowEnvironment,
  options: { taskQueue: string; workflowBundle: WorkflowBundle; activities: ActivityMocks },
  body: () => Promise<T>,
): Promise<T> {
  const worker = await Worker.create({
    connection: env.nativeConnection,
    namespace: env.namespace ?? 'default',
    taskQueue: options.taskQueue,
    workflowBundle: options.workflowBundle,
    activities: options.activities,
  });
  return worker.runUntil(body);
}

/** A promise a mocked activity waits on until the test lets it go on. */
export function gate(): { wait: Promise<void>; open(): void } {
  let open!: () => void;
  const wait = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { wait, open };
}
