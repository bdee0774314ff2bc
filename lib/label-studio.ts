// A typed client for the parts of Label Studio's REST API that curation uses. It takes a legacy
// token or a personal access token (a JWT refresh token, exchanged for short-lived access tokens
// and renewed on 401), retries 5xx, 429 and timeouts with backoff, reuses connections, and checks
// every answer with zod.
import { Agent, request } from 'undici';
import { z } from 'zod';

import { sleep } from './abortable.js';
import type { Config } from './config.js';

export interface LabelStudioOptions {
  url: string;
  apiKey: string;
  timeoutMs: number;
  /** Quick retries of one call; long outages are the caller's (Temporal's) to ride out. */
  retries: number;
}

export class LabelStudioError extends Error {
  constructor(
    message: string,
    readonly status: number | null,
    readonly retryable: boolean,
  ) {
    super(message);
    this.name = 'LabelStudioError';
  }
}

/** The credentials are wrong: retrying will not help. */
export class LabelStudioAuthError extends LabelStudioError {
  constructor(message: string, status: number) {
    super(message, status, false);
    this.name = 'LabelStudioAuthError';
  }
}

const labelStudioProjectSchema = z
  .object({ id: z.number().int(), title: z.string(), label_config: z.string().optional() })
  .loose();
export type LabelStudioProject = z.infer<typeof labelStudioProjectSchema>;
const projectPageSchema = z
  .object({
    count: z.number().int().optional(),
    next: z.string().nullable().optional(),
    results: z.array(labelStudioProjectSchema),
  })
  .loose();
const syncImportSchema = z
  .object({ task_count: z.number().int(), task_ids: z.array(z.number().int()).optional() })
  .loose();
const asyncImportSchema = z.object({ import: z.number().int() }).loose();
const importStatusSchema = z
  .object({
    status: z.string(),
    task_count: z.number().int().optional(),
    task_ids: z.array(z.number().int()).optional(),
  })
  .loose();
const taskPageSchema = z
  .object({
    total: z.number().int(),
    tasks: z.array(z.object({ id: z.number().int(), data: z.record(z.string(), z.unknown()) }).loose()),
  })
  .loose();
const exportedTaskSchema = z
  .object({
    id: z.number().int(),
    data: z.record(z.string(), z.unknown()),
    annotations: z
      .array(
        z
          .object({
            result: z.array(z.record(z.string(), z.unknown())).optional(),
            was_cancelled: z.boolean().optional(),
            created_at: z.string().optional(),
            updated_at: z.string().optional(),
          })
          .loose(),
      )
      .optional(),
  })
  .loose();
export type LsExportedTask = z.infer<typeof exportedTaskSchema>;

/** The configured Label Studio, or undefined when LABEL_STUDIO_URL or LABEL_STUDIO_API_KEY is unset. */
export function labelStudioClient(config: Config): LabelStudio | undefined {
  const { url, apiKey, timeoutMs, retries } = config.labelStudio;
  return url !== undefined && apiKey !== undefined ? new LabelStudio({ url, apiKey, timeoutMs, retries }) : undefined;
}

/** A personal access token is a JWT (three base64url parts); a legacy token is not. */
export function isPersonalAccessToken(key: string): boolean {
  const parts = key.split('.');
  if (parts.length !== 3) return false;
  try {
    const header = JSON.parse(Buffer.from(parts[0] ?? '', 'base64url').toString('utf8')) as { alg?: unknown };
    return typeof header.alg === 'string';
  } catch {
    return false;
  }
}

function describe(status: number, body: string): string {
  try {
    const parsed = JSON.parse(body) as { detail?: unknown; validation_errors?: unknown; label_config?: unknown };
    const detail = parsed.validation_errors ?? parsed.label_config ?? parsed.detail;
    if (detail !== undefined)
      return `Label Studio answered ${status}: ${typeof detail === 'string' ? detail : JSON.stringify(detail)}`;
  } catch {
    // not JSON
  }
  return `Label Studio answered ${status}: ${body.slice(0, 300)}`;
}

export class LabelStudio {
  private readonly base: string;
  private readonly agent: Agent;
  private access: string | undefined;

  constructor(private readonly options: LabelStudioOptions) {
    this.base = options.url.replace(/\/+$/, '');
    this.agent = new Agent({
      connections: 8,
      keepAliveTimeout: 30_000,
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
    });
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  private async refreshAccess(): Promise<string> {
    const res = await request(`${this.base}/api/token/refresh/`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ refresh: this.options.apiKey }),
      dispatcher: this.agent,
    });
    const text = await res.body.text();
    if (res.statusCode === 401 || res.statusCode === 403)
      throw new LabelStudioAuthError(
        `the personal access token was refused: ${describe(res.statusCode, text)}`,
        res.statusCode,
      );
    if (res.statusCode !== 200)
      throw new LabelStudioError(
        describe(res.statusCode, text),
        res.statusCode,
        res.statusCode >= 500 || res.statusCode === 429,
      );
    const access = z.object({ access: z.string() }).parse(JSON.parse(text)).access;
    this.access = access;
    return access;
  }

  private async authorization(): Promise<string> {
    if (!isPersonalAccessToken(this.options.apiKey)) return `Token ${this.options.apiKey}`;
    return `Bearer ${this.access ?? (await this.refreshAccess())}`;
  }

  /** One call, with quick retries of what may pass (network, timeouts, 5xx, 429) and one token refresh. */
  async call<T>(
    method: 'GET' | 'POST' | 'PATCH' | 'DELETE',
    path: string,
    schema: z.ZodType<T> | null,
    body?: unknown,
  ): Promise<T> {
    let refreshed = false;
    for (let attempt = 0; ; attempt++) {
      let status: number;
      let text: string;
      let retryAfterMs: number | undefined;
      try {
        const headers: Record<string, string> = {
          authorization: await this.authorization(),
          accept: 'application/json',
        };
        if (body !== undefined) headers['content-type'] = 'application/json';
        const res = await request(`${this.base}${path}`, {
          method,
          headers,
          body: body === undefined ? undefined : JSON.stringify(body),
          dispatcher: this.agent,
          signal: AbortSignal.timeout(this.options.timeoutMs),
        });
        status = res.statusCode;
        text = await res.body.text();
        const retryAfter = Number(res.headers['retry-after']);
        if (Number.isFinite(retryAfter) && retryAfter > 0) retryAfterMs = retryAfter * 1000;
      } catch (err) {
        if (err instanceof LabelStudioError && !err.retryable) throw err;
        if (attempt >= this.options.retries) {
          throw new LabelStudioError(
            `Label Studio at ${this.base} is unreachable: ${(err as Error).message}`,
            null,
            true,
          );
        }
        await sleep(Math.min(10_000, 250 * 2 ** attempt) * (0.5 + Math.random()));
        continue;
      }
      if (status === 401 && isPersonalAccessToken(this.options.apiKey) && !refreshed) {
        // Access tokens live minutes: get a new one and try again, once.
        refreshed = true;
        this.access = undefined;
        attempt--;
        continue;
      }
      if (status === 401 || status === 403)
        throw new LabelStudioAuthError(`Label Studio refused the API key: ${describe(status, text)}`, status);
      if (status >= 500 || status === 429 || status === 408) {
        if (attempt >= this.options.retries) throw new LabelStudioError(describe(status, text), status, true);
        await sleep(retryAfterMs ?? Math.min(10_000, 250 * 2 ** attempt) * (0.5 + Math.random()));
        continue;
      }
      if (status >= 400) throw new LabelStudioError(describe(status, text), status, false);
      if (schema === null) return undefined as T;
      const parsed = schema.safeParse(text === '' ? null : JSON.parse(text));
      if (!parsed.success)
        throw new LabelStudioError(
          `unexpected answer from Label Studio to ${method} ${path}: ${parsed.error.message}`,
          status,
          false,
        );
      return parsed.data;
    }
  }

  whoami(): Promise<{ id: number; email?: string }> {
    return this.call(
      'GET',
      '/api/current-user/whoami',
      z.object({ id: z.number().int(), email: z.string().optional() }).loose(),
    );
  }

  /** Throws a non-retryable error with Label Studio's reason when the config is invalid. */
  async validateConfig(labelConfig: string): Promise<void> {
    await this.call('POST', '/api/projects/validate/', null, { label_config: labelConfig });
  }

  createProject(p: { title: string; description: string; label_config: string }): Promise<LabelStudioProject> {
    return this.call('POST', '/api/projects/', labelStudioProjectSchema, p);
  }

  getProject(id: number): Promise<LabelStudioProject> {
    return this.call('GET', `/api/projects/${id}/`, labelStudioProjectSchema);
  }

  /** Projects whose title is exactly this (Label Studio's filter is a case-insensitive "contains"). */
  async projectsTitled(title: string): Promise<LabelStudioProject[]> {
    const found: LabelStudioProject[] = [];
    for (let page = 1; ; page++) {
      const res = await this.call(
        'GET',
        `/api/projects/?title=${encodeURIComponent(title)}&page=${page}&page_size=100`,
        projectPageSchema,
      );
      found.push(...res.results.filter((p) => p.title === title));
      if (res.next === null || res.next === undefined || res.results.length === 0) return found;
    }
  }

  /**
   * Imports tasks; resolves with their ids when Label Studio says them. The Community edition answers
   * at once; the Enterprise edition answers {import: id}, which is polled until it is done.
   */
  async importTasks(
    projectId: number,
    tasks: unknown[],
    pollMs = 1000,
  ): Promise<{ count: number; taskIds: number[] | undefined }> {
    const answer = await this.call(
      'POST',
      `/api/projects/${projectId}/import?return_task_ids=true`,
      z.unknown(),
      tasks,
    );
    const done = syncImportSchema.safeParse(answer);
    if (done.success) return { count: done.data.task_count, taskIds: done.data.task_ids };
    const pending = asyncImportSchema.safeParse(answer);
    if (!pending.success)
      throw new LabelStudioError(
        `unexpected answer from Label Studio to an import: ${JSON.stringify(answer).slice(0, 300)}`,
        null,
        false,
      );
    // Polled for as long as one call may take; a retried page then looks for its tasks before re-sending.
    const deadline = Date.now() + this.options.timeoutMs;
    for (;;) {
      const state = await this.call(
        'GET',
        `/api/projects/${projectId}/imports/${pending.data.import}/`,
        importStatusSchema,
      );
      if (state.status === 'completed') return { count: state.task_count ?? tasks.length, taskIds: state.task_ids };
      if (state.status === 'failed')
        throw new LabelStudioError(`Label Studio import ${pending.data.import} failed`, null, false);
      if (Date.now() > deadline)
        throw new LabelStudioError(
          `Label Studio import ${pending.data.import} did not finish within ${this.options.timeoutMs} ms`,
          null,
          true,
        );
      await sleep(pollMs);
    }
  }

  /** Task ids by the value of a data key, for the values given (those not found are absent). */
  async findTasks(projectId: number, key: string, values: string[]): Promise<Map<string, number>> {
    const found = new Map<string, number>();
    for (let i = 0; i < values.length; i += 100) {
      const group = values.slice(i, i + 100);
      const query = {
        filters: {
          conjunction: 'or',
          items: group.map((value) => ({
            filter: `filter:tasks:data.${key}`,
            operator: 'equal',
            type: 'String',
            value,
          })),
        },
      };
      // Label Studio URL-decodes this parameter twice, so it is encoded twice.
      const q = encodeURIComponent(encodeURIComponent(JSON.stringify(query)));
      for (let page = 1; ; page++) {
        const res = await this.call(
          'GET',
          `/api/tasks?project=${projectId}&page=${page}&page_size=100&query=${q}`,
          taskPageSchema,
        );
        for (const task of res.tasks) {
          const value = task.data[key];
          if (typeof value === 'string') found.set(value, task.id);
        }
        // Asking past the last page is a 404, so stop on the total.
        if (page * 100 >= res.total) break;
      }
    }
    return found;
  }

  /**
   * The annotated tasks among these task ids, with their annotations (Label Studio filters by id, so
   * only what is asked for crosses the wire; ask in slices of a few hundred ids).
   */
  exportAnnotated(projectId: number, taskIds: number[]): Promise<LsExportedTask[]> {
    if (taskIds.length === 0) return Promise.resolve([]);
    const ids = taskIds.map((id) => `ids=${id}`).join('&');
    return this.call('GET', `/api/projects/${projectId}/export?exportType=JSON&${ids}`, z.array(exportedTaskSchema));
  }

  async createWebhook(w: {
    project: number;
    url: string;
    headers: Record<string, string>;
    actions: string[];
  }): Promise<void> {
    await this.call('POST', '/api/webhooks/', null, {
      ...w,
      send_payload: true,
      send_for_all_actions: false,
      is_active: true,
    });
  }

  /** The URLs of the webhooks set up on a project. */
  async webhookUrls(projectId: number): Promise<string[]> {
    const hooks = await this.call(
      'GET',
      `/api/webhooks/?project=${projectId}`,
      z.array(z.object({ url: z.string(), project: z.number().int().nullable().optional() }).loose()),
    );
    return hooks
      .filter((h) => h.project === undefined || h.project === null || h.project === projectId)
      .map((h) => h.url);
  }
}
