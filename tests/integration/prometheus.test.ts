// What an operator's Prometheus and Grafana see, on the real thing: promtool checks the shipped config
// and alert rules and runs the rules' unit tests; then Debian's Prometheus, with the shipped config
// (its targets pointed at this stack, scraping every second), scrapes every process while a batch
// runs, and every query of the Grafana dashboard must answer with data at a moment the batch was
// running — progress, rate and what is running, without opening a log — while no alert holds.
import { spawn, type ChildProcess } from 'node:child_process';
import { access, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import getPort from 'get-port';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';

import type { RunningSimulator } from '../../simulator/server.js';
import { batchLines, submitBatch, waitForBatch } from '../support/batches.js';
import { spawnEntry, spawnGpuWorker, type ChildUnderTest } from '../support/processes.js';
import { startTestSimulator } from '../support/simulator.js';
import { startTestStack, type TestStack } from '../support/stack.js';

const CONFIG = 'deploy/prometheus/prometheus.yml';
const RULES = 'deploy/prometheus/alerts.yml';
const RULE_TESTS = 'deploy/prometheus/alerts.test.yml';
const DASHBOARD = 'deploy/grafana/gpu-batch.json';

const INSTALL_HINT =
  "install Debian's package (`apt-get install prometheus`, as .ci/run does), which brings promtool with it";

/** The path of a program on PATH; a missing one fails the test with how to install it (never a skip). */
async function installed(program: string): Promise<string> {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir === '') continue;
    const candidate = path.join(dir, program);
    try {
      await access(candidate);
      return candidate;
    } catch {
      // the next folder
    }
  }
  throw new Error(`${program} is not installed: ${INSTALL_HINT}`);
}

/** Runs a program to its end (killed after timeoutMs): its exit code and everything it wrote. */
function run(program: string, args: string[], timeoutMs = 60_000): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    child.once('error', reject);
    child.once('close', (code) => {
      resolve({ code, output });
    });
  });
}

interface RuleFile {
  groups: { name: string; rules: { alert?: string; record?: string; expr: string; for?: string }[] }[];
}
interface RuleTests {
  tests: { alert_rule_test?: { alertname: string; exp_alerts: unknown[] }[] }[];
}
interface PrometheusConfig {
  global?: Record<string, unknown>;
  rule_files?: string[];
  alerting?: { alertmanagers: { static_configs: { targets: string[] }[] }[] };
  scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[];
}
interface Dashboard {
  panels: { title: string; type: string; targets?: { expr: string }[]; panels?: Dashboard['panels'] }[];
}

async function alertRules(): Promise<{ alert: string; expr: string }[]> {
  const file = parse(await readFile(RULES, 'utf8')) as RuleFile;
  return file.groups.flatMap((g) =>
    g.rules.flatMap((r) => (r.alert === undefined ? [] : [{ alert: r.alert, expr: r.expr }])),
  );
}

/** Every query of the dashboard, with its panel's title (rows' own panels too, for a collapsed row). */
async function dashboardQueries(): Promise<{ panel: string; expr: string }[]> {
  const dashboard = JSON.parse(await readFile(DASHBOARD, 'utf8')) as Dashboard;
  const walk = (panels: Dashboard['panels']): { panel: string; expr: string }[] =>
    panels.flatMap((p) => [
      ...(p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })),
      ...walk(p.panels ?? []),
    ]);
  return walk(dashboard.panels);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** SIGTERM, and SIGKILL if it has not exited within 10 s. */
async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => {
      resolve();
    });
  });
  child.kill('SIGTERM');
  if (await Promise.race([exited.then(() => true), sleep(10_000).then(() => false)])) return;
  child.kill('SIGKILL');
  await exited;
}

describe('the Prometheus config and alert rules', () => {
  it('are accepted by promtool, with the alert rules loaded from the config', async () => {
    const promtool = await installed('promtool');
    const rules = await alertRules();
    expect(rules.map((r) => r.alert).sort()).toEqual([
      'GpuBatchChunksDeadLettered',
      'GpuBatchProcessDown',
      'GpuBatchStalled',
      'GpuBatchStuckInPhase',
      'GpuBatchWebhookDeliveriesFailing',
      'GpuBatchWorkerNotPolling',
    ]);
    const config = await run(promtool, ['check', 'config', CONFIG]);
    expect(config.output).toContain(`SUCCESS: ${CONFIG} is valid prometheus config file syntax`);
    // Checking the config checks the rule files it names, so this also says the config loads them.
    expect(config.output).toContain(`SUCCESS: ${rules.length} rules found`);
    expect(config.code, config.output).toBe(0);
    const check = await run(promtool, ['check', 'rules', RULES]);
    expect(check.code, check.output).toBe(0);
    expect(check.output).toContain(`SUCCESS: ${rules.length} rules found`);
  });

  it('pass their unit tests, in which every alert both fires and stays quiet', async () => {
    const promtool = await installed('promtool');
    const result = await run(promtool, ['test', 'rules', RULE_TESTS]);
    expect(result.output).not.toContain('FAILED');
    expect(result.output).toMatch(/SUCCESS/);
    expect(result.code, result.output).toBe(0);
    // promtool passes a file with no case for an alert: make sure each alert has both kinds.
    const cases = (parse(await readFile(RULE_TESTS, 'utf8')) as RuleTests).tests.flatMap(
      (t) => t.alert_rule_test ?? [],
    );
    for (const { alert } of await alertRules()) {
      const mine = cases.filter((c) => c.alertname === alert);
      expect(
        mine.some((c) => c.exp_alerts.length > 0),
        `${alert} has no case where it fires`,
      ).toBe(true);
      expect(
        mine.some((c) => c.exp_alerts.length === 0),
        `${alert} has no case where it stays quiet`,
      ).toBe(true);
    }
  });
});

interface QueryAnswer {
  status: string;
  error?: string;
  data: { resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] };
}

describe('a real Prometheus scraping the stack while a batch runs', () => {
  let stack: TestStack;
  let engine: RunningSimulator;
  let orchestrator: ChildUnderTest;
  let gpu: ChildUnderTest;
  let importer: ChildUnderTest;
  let prometheusOutput = '';
  /** What beforeAll started, stopped in reverse order by afterAll (however far beforeAll got). */
  const cleanups: (() => Promise<unknown>)[] = [];
  let promUrl: string;
  const model = 'prometheus-model';
  const ports = { orchestrator: 0, gpu: 0, importer: 0, prometheus: 0, alertmanager: 0 };
  /** A moment the batch was running (Unix seconds), and its id: what the dashboard is asked about. */
  let during = 0;
  let batchId = '';

  const query = async (expr: string, time?: number): Promise<QueryAnswer> => {
    const params = new URLSearchParams({ query: expr });
    if (time !== undefined) params.set('time', String(time));
    const res = await fetch(`${promUrl}/api/v1/query?${params.toString()}`, { signal: AbortSignal.timeout(10_000) });
    const answer = (await res.json()) as QueryAnswer;
    if (answer.status !== 'success') throw new Error(`Prometheus refused ${expr}: ${answer.error ?? res.status}`);
    return answer;
  };
  /** Waits (at most timeoutMs) until the query answers with a series for each label value wanted. */
  const waitForSeries = async (expr: string, label: string, wanted: string[], timeoutMs: number): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    let seen: string[] = [];
    while (Date.now() < deadline) {
      seen = (await query(expr)).data.result.map((r) => r.metric[label] ?? '');
      if (wanted.every((w) => seen.includes(w))) return;
      await sleep(500);
    }
    throw new Error(`${expr} answered for ${label} ${JSON.stringify(seen)}, not all of ${JSON.stringify(wanted)}`);
  };

  beforeAll(async () => {
    const binary = await installed('prometheus');
    // 20 ms a token, 8 tokens, 8 in flight: about 50 requests a second, so 1200 lines run for tens of
    // seconds of one-second scrapes.
    engine = await startTestSimulator({
      models: [model],
      tokenLatencyMs: 20,
      outputTokens: { min: 8, max: 8 },
      maxModelLen: 2048,
    });
    cleanups.push(() => engine.close());
    stack = await startTestStack({ engines: [], noOrchestrator: true, noImportWorker: true });
    cleanups.push(() => stack.stop());
    ports.orchestrator = await getPort();
    ports.gpu = await getPort();
    ports.importer = await getPort();
    ports.prometheus = await getPort();
    ports.alertmanager = await getPort();
    orchestrator = spawnEntry('workers/orchestrator.ts', {
      ...stack.processEnv(),
      ORCHESTRATOR_METRICS_PORT: String(ports.orchestrator),
    });
    cleanups.push(() => orchestrator.stop());
    importer = spawnEntry('workers/import.ts', { ...stack.processEnv(), IMPORT_METRICS_PORT: String(ports.importer) });
    cleanups.push(() => importer.stop());
    gpu = await spawnGpuWorker(stack, engine.url, {
      GPU_METRICS_PORT: String(ports.gpu),
      GPU_MAX_INFLIGHT: '8',
      GPU_CONCURRENT_CHUNKS: '1',
    });
    cleanups.push(() => gpu.stop());
    await Promise.all([orchestrator.waitFor('orchestrator worker ready'), importer.waitFor('import worker ready')]);

    // The shipped config as it is, but for where its targets are and how often it looks.
    const dir = await mkdtemp(path.join(tmpdir(), 'prometheus-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const shipped = parse(await readFile(CONFIG, 'utf8')) as PrometheusConfig;
    const hostPort = (url: string): string => new URL(url).host;
    const targets: Record<string, string> = {
      'gpu-batch-api': hostPort(stack.apiUrl),
      'gpu-batch-orchestrator': `127.0.0.1:${ports.orchestrator}`,
      'gpu-batch-import': `127.0.0.1:${ports.importer}`,
      'gpu-batch-gpu': `127.0.0.1:${ports.gpu}`,
      vllm: hostPort(engine.url),
    };
    // A job added to the config must be scraped here too, or its panels would go untested.
    expect(shipped.scrape_configs.map((j) => j.job_name).sort()).toEqual(Object.keys(targets).sort());
    const config: PrometheusConfig = {
      ...shipped,
      global: { ...shipped.global, scrape_interval: '1s', evaluation_interval: '1s' },
      rule_files: (shipped.rule_files ?? []).map((f) => path.resolve(path.dirname(CONFIG), f)),
      scrape_configs: shipped.scrape_configs.map((job) => ({
        ...job,
        static_configs: [{ targets: [targets[job.job_name] ?? ''] }],
      })),
      // The shipped Alertmanager, pointed here: no alert should fire, so nothing is sent to it.
      ...(shipped.alerting === undefined
        ? {}
        : {
            alerting: {
              alertmanagers: shipped.alerting.alertmanagers.map((a) => ({
                ...a,
                static_configs: [{ targets: [`127.0.0.1:${ports.alertmanager}`] }],
              })),
            },
          }),
    };
    await writeFile(path.join(dir, 'prometheus.yml'), stringify(config));
    promUrl = `http://127.0.0.1:${ports.prometheus}`;
    const prometheus = spawn(
      binary,
      [
        `--config.file=${path.join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${path.join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${ports.prometheus}`,
        '--log.level=warn',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    prometheus.stdout.on('data', (c: Buffer) => (prometheusOutput += c.toString()));
    prometheus.stderr.on('data', (c: Buffer) => (prometheusOutput += c.toString()));
    cleanups.push(() => stopProcess(prometheus));
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (prometheus.exitCode !== null)
        throw new Error(`Prometheus exited (${prometheus.exitCode}):\n${prometheusOutput}`);
      const ready = await fetch(`${promUrl}/-/ready`, { signal: AbortSignal.timeout(2000) }).then(
        (r) => r.status === 200,
        () => false,
      );
      if (ready) break;
      if (Date.now() > deadline) throw new Error(`Prometheus was not ready within 60 s:\n${prometheusOutput}`);
      await sleep(250);
    }
    // Every target scraped, and every worker polling its task queues as its own watchdog sees it.
    await waitForSeries('up == 1', 'job', Object.keys(targets), 60_000);
    await waitForSeries(
      'gpu_batch_worker_polling == 1',
      'job',
      ['gpu-batch-orchestrator', 'gpu-batch-import', 'gpu-batch-gpu'],
      60_000,
    );

    // A batch long enough for many scrapes; a moment it was running, well into it, is what the
    // dashboard is asked about.
    const created = await submitBatch(stack, batchLines({ model, count: 1200 }));
    batchId = created.id;
    let firstRunning: number | undefined;
    const finished = Date.now() + 180_000;
    for (;;) {
      const batch = await stack.openai.batches.retrieve(batchId);
      const now = Date.now() / 1000;
      const done = (batch.request_counts?.completed ?? 0) + (batch.request_counts?.failed ?? 0);
      if (batch.status === 'in_progress' && done > 0) {
        firstRunning ??= now;
        // Ten seconds of it at least (the panels' rate windows), and not yet every request.
        if (now - firstRunning >= 12 && done < 1200) during = now;
      }
      if (!['validating', 'in_progress'].includes(batch.status)) break;
      if (Date.now() > finished) throw new Error(`batch ${batchId} still ${batch.status} after 180 s`);
      await sleep(250);
    }
    const batch = await waitForBatch(stack.openai, batchId, 60_000);
    expect(batch.status).toBe('completed');
    expect(batch.request_counts).toEqual({ total: 1200, completed: 1200, failed: 0 });
    // Too quick a batch would leave nothing to look at: make it longer (more lines, slower tokens).
    expect(during, 'the batch never ran for 12 s with requests left').toBeGreaterThan(0);
    // The scrape after `during` has landed before the queries ask about it.
    await sleep(2000);
  });

  afterAll(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  it('answers every query of the Grafana dashboard with data while the batch runs', async () => {
    // What Grafana puts in for its variables, at one-second scrapes: $__rate_interval is at least four
    // scrape intervals; ten seconds leaves room for a late scrape on a loaded machine.
    const variables: Record<string, string> = {
      $__rate_interval: '10s',
      $__interval: '2s',
      $__range: '5m',
    };
    const queries = await dashboardQueries();
    expect(queries.length).toBeGreaterThan(25);
    const empty: string[] = [];
    for (const q of queries) {
      const expr = Object.entries(variables).reduce((e, [name, value]) => e.replaceAll(name, value), q.expr);
      // A variable the dashboard gained must get a value here, not be sent to Prometheus as is.
      expect(expr, q.panel).not.toMatch(/\$/);
      const answer = await query(expr, during);
      if (answer.data.result.length === 0) empty.push(`${q.panel}: ${q.expr}`);
    }
    expect(empty).toEqual([]);

    // And what they show is this batch, running: its progress part-way, its rate and time left
    // above zero, requests answered and in flight at its engine.
    const perBatch = async (title: string): Promise<number | undefined> => {
      const expr = queries.find((q) => q.panel === title)?.expr ?? '';
      const answer = await query(expr.replaceAll('$__rate_interval', variables.$__rate_interval ?? ''), during);
      const mine = answer.data.result.find((r) => r.metric.batch_id === batchId);
      expect(mine?.metric, title).toMatchObject({ model, project: expect.any(String) });
      return mine === undefined ? undefined : Number(mine.value[1]);
    };
    const progress = await perBatch('Unfinished batches: progress');
    expect(progress).toBeGreaterThan(0);
    expect(progress).toBeLessThan(1);
    expect(await perBatch('Requests per second per batch')).toBeGreaterThan(1);
    expect(await perBatch('Time left per batch')).toBeGreaterThan(0);
    const value = async (expr: string): Promise<number> => Number((await query(expr, during)).data.result[0]?.value[1]);
    expect(await value('sum(rate(gpu_batch_requests_total{outcome="completed"}[10s]))')).toBeGreaterThan(1);
    expect(await value('max(gpu_batch_batches{status="in_progress"})')).toBe(1);
    expect(await value('max_over_time(sum(gpu_batch_inflight_requests)[10s:1s])')).toBeGreaterThan(0);
  });

  it('has loaded the alert rules, and no alert holds during or after a healthy batch', async () => {
    const rules = await alertRules();
    const res = await fetch(`${promUrl}/api/v1/rules?type=alert`, { signal: AbortSignal.timeout(10_000) });
    const loaded = (await res.json()) as {
      data: { groups: { rules: { name: string; health: string; lastError?: string; state: string }[] }[] };
    };
    const all = loaded.data.groups.flatMap((g) => g.rules);
    expect(all.map((r) => r.name).sort()).toEqual(rules.map((r) => r.alert).sort());
    for (const rule of all) {
      expect(rule.health, `${rule.name}: ${rule.lastError ?? ''}`).toBe('ok');
      expect(rule.state, rule.name).toBe('inactive');
    }
    // Their conditions, not only their state: `for` would keep a wrong condition from firing in a test this short.
    for (const { alert, expr } of rules) {
      expect((await query(expr, during)).data.result, `${alert} during the batch`).toEqual([]);
      expect((await query(expr)).data.result, `${alert} after the batch`).toEqual([]);
    }
    // The shipped config's alerting section names an Alertmanager, which this Prometheus would send to.
    const managers = await fetch(`${promUrl}/api/v1/alertmanagers`, { signal: AbortSignal.timeout(10_000) });
    const active = ((await managers.json()) as { data: { activeAlertmanagers: { url: string }[] } }).data
      .activeAlertmanagers;
    expect(active.map((a) => a.url)).toEqual([`http://127.0.0.1:${ports.alertmanager}/api/v2/alerts`]);
    const alerts = await fetch(`${promUrl}/api/v1/alerts`, { signal: AbortSignal.timeout(10_000) });
    expect(((await alerts.json()) as { data: { alerts: unknown[] } }).data.alerts).toEqual([]);
  });
});
