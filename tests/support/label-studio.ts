// A real Label Studio per test file: a copy of a migrated data folder (made once by the global
// setup), started on a free port with a known token, and stopped (or restarted) at will.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import getPort from 'get-port';
import { inject } from 'vitest';

import { copyTemplate, startLabelStudio, type RunningLabelStudio } from '../../dev/label-studio-local.js';
import { createLogger } from '../../lib/logger.js';
import { LS_PASSWORD, LS_TOKEN, LS_USER } from './label-studio-credentials.js';

export interface TestLabelStudio {
  url: string;
  token: string;
  /** The settings that point a stack at it (LABEL_STUDIO_URL and its key). */
  env: Record<string, string>;
  /** Stops it (data kept), for outage tests. */
  stop(): Promise<void>;
  /** Starts it again on the same port and data. */
  start(): Promise<void>;
  /** Stops it for good and removes its data. */
  destroy(): Promise<void>;
}

export async function startTestLabelStudio(): Promise<TestLabelStudio> {
  const { binary, template } = inject('services').labelStudio;
  const log = createLogger('label-studio', { level: 'warn', format: 'json' });
  const dir = await mkdtemp(path.join(tmpdir(), 'ls-'));
  const dataDir = path.join(dir, 'data');
  const settings = { binary, port: await getPort(), user: LS_USER, password: LS_PASSWORD, token: LS_TOKEN };
  await copyTemplate(template, dataDir);
  let running: RunningLabelStudio | undefined = await startLabelStudio({ ...settings, dataDir }, log);
  const url = running.url;
  return {
    url,
    token: LS_TOKEN,
    env: { LABEL_STUDIO_URL: url, LABEL_STUDIO_API_KEY: LS_TOKEN },
    stop: async () => {
      await running?.stop();
      running = undefined;
    },
    start: async () => {
      running ??= await startLabelStudio({ ...settings, dataDir }, log);
    },
    destroy: async () => {
      await running?.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface LsTask {
  id: number;
  data: Record<string, unknown>;
  predictions?: {
    model_version: string;
    result: { from_name: string; type: string; value: Record<string, unknown> }[];
  }[];
}

/** Every task of a project (of one batch, where given), read back through Label Studio's API. */
export async function tasksIn(ls: TestLabelStudio, projectId: number, batchId?: string): Promise<LsTask[]> {
  const tasks: LsTask[] = [];
  for (let page = 1; ; page++) {
    const res = await fetch(`${ls.url}/api/tasks?project=${projectId}&fields=all&page=${page}&page_size=100`, {
      headers: { authorization: `Token ${ls.token}` },
    });
    const body = (await res.json()) as { total: number; tasks: LsTask[] };
    tasks.push(...body.tasks);
    if (page * 100 >= body.total)
      return batchId === undefined ? tasks : tasks.filter((t) => t.data.batch_id === batchId);
  }
}

/**
 * A review submitted through Label Studio's API, as a curator's Submit sends it: `result` is the
 * controls' values. Answers the HTTP status (201 when Label Studio took it).
 */
export async function annotateTask(ls: TestLabelStudio, taskId: number, result: unknown[]): Promise<number> {
  const res = await fetch(`${ls.url}/api/tasks/${taskId}/annotations/`, {
    method: 'POST',
    headers: { authorization: `Token ${ls.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ result }),
  });
  await res.body?.cancel();
  return res.status;
}
