// `npm run bench -- [--scenario name ...] [--runs N] [--quick] [--profile] [--engine-url URL --model NAME ...]`
// Runs the benchmark scenarios and writes docs/benchmarks.json and docs/benchmarks.md. Running a
// subset of scenarios updates just those in the reports.
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { isEntryPoint, runEntryPoint } from '../lib/entry.js';
import { log, watchMachine } from './harness.js';
import { keptSection, machineText, toJson, toMarkdown, type ScenarioResult } from './report.js';
import { SCENARIOS, type Options, type ScenarioName } from './scenarios.js';

const USAGE = `Usage: npm run bench -- [options]
  --scenario NAME     one of ${Object.keys(SCENARIOS).join(', ')} (repeatable; default: all)
  --runs N            runs per scenario (default 3)
  --quick             smaller batches, for a fast look (not for the published figures)
  --profile           write CPU profiles of the API, orchestrator and GPU workers to .data/profiles
  --out DIR           where the reports go (default docs)
 overhead and vllm only:
  --engine-url URL    a vLLM server already running (its root, e.g. http://127.0.0.1:8000) instead of
                      the simulator (overhead) or the CPU vLLM the scenario starts (vllm)
  --model NAME        the model that server serves (needed with --engine-url for overhead)
  --concurrency N     requests in flight, for the system and the direct client alike (256; vllm: 16)
  --requests N        requests per run, for each workload (overhead: 5000, 2500 and 4000; 10000 with
                      --engine-url or --max-tokens; vllm: 160)
  --max-tokens N      every answer N tokens (vllm: 16); overhead: one chat workload of such answers
                      instead of its three (100 to 300 tokens by line, 2 KB answers, embeddings)
 overhead only:
  --workload NAME     only this of its three workloads: chat, 2kb or embeddings (repeatable), for a
                      look at one (its report then holds only those: use --out)
 vllm only:
  --pin               diagnosis: vLLM on CPU 1, the system and the client on CPU 0
 any scenario:
  --stack-env K=V     more environment for the stack's processes, to try a setting (repeatable)`;

/** Scenarios that take --engine-url and the request options. */
const ENGINE_SCENARIOS: readonly string[] = ['overhead', 'vllm'];

function positive(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const v = Number(value);
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${flag} must be a whole number of at least 1`);
  return v;
}

if (isEntryPoint(import.meta.url)) {
  runEntryPoint(async () => {
    const { values } = parseArgs({
      options: {
        scenario: { type: 'string', multiple: true },
        runs: { type: 'string', default: '3' },
        quick: { type: 'boolean', default: false },
        profile: { type: 'boolean', default: false },
        out: { type: 'string', default: 'docs' },
        'engine-url': { type: 'string' },
        model: { type: 'string' },
        concurrency: { type: 'string' },
        requests: { type: 'string' },
        'max-tokens': { type: 'string' },
        workload: { type: 'string', multiple: true },
        'stack-env': { type: 'string', multiple: true },
        pin: { type: 'boolean', default: false },
        help: { type: 'boolean', default: false },
      },
    });
    if (values.help) {
      console.log(USAGE);
      return;
    }
    const names = (values.scenario ?? Object.keys(SCENARIOS)).flatMap((s) => s.split(',')) as ScenarioName[];
    for (const name of names) if (!(name in SCENARIOS)) throw new Error(`unknown scenario "${name}"\n${USAGE}`);
    const runs = Number(values.runs);
    if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs must be a whole number of at least 1');
    const profileDir = path.resolve('.data/profiles');
    if (values.workload !== undefined && names.some((name) => name !== 'overhead'))
      throw new Error('--workload applies to the overhead scenario only: name it with --scenario overhead');
    const engineFlags = ['engine-url', 'model', 'concurrency', 'requests', 'max-tokens'] as const;
    const given = engineFlags.filter((f) => values[f] !== undefined);
    if (values.pin && names.some((name) => name !== 'vllm')) throw new Error('--pin applies to the vllm scenario only');
    const others = names.filter((name) => !ENGINE_SCENARIOS.includes(name));
    if (given.length > 0 && others.length > 0)
      throw new Error(
        `--${given.join(', --')} apply to ${ENGINE_SCENARIOS.join(' and ')} only, not ${others.join(', ')}: name the scenario with --scenario`,
      );
    const stackEnv: Record<string, string> = {};
    for (const pair of values['stack-env'] ?? []) {
      const at = pair.indexOf('=');
      if (at < 1) throw new Error(`--stack-env wants KEY=VALUE, got "${pair}"`);
      stackEnv[pair.slice(0, at)] = pair.slice(at + 1);
    }
    const engineUrl = values['engine-url']?.replace(/\/+$/, '').replace(/\/v1$/, '');
    const options: Options = {
      runs,
      quick: values.quick,
      profileDir: values.profile ? profileDir : undefined,
      engineUrl,
      model: values.model,
      concurrency: positive('concurrency', values.concurrency),
      requests: positive('requests', values.requests),
      maxTokens: positive('max-tokens', values['max-tokens']),
      workloads: values.workload?.flatMap((w) => w.split(',')),
      stackEnv,
      pin: values.pin,
    };
    if (Object.keys(stackEnv).length > 0)
      log.warn({ stackEnv }, 'the stack runs with settings of your own: these figures are not the published ones');

    const jsonPath = path.join(values.out, 'benchmarks.json');
    const previous: ScenarioResult[] = existsSync(jsonPath)
      ? ((JSON.parse(await readFile(jsonPath, 'utf8')) as { scenarios?: ScenarioResult[] }).scenarios ?? [])
      : [];
    const results = new Map(previous.map((r) => [r.name, r]));
    const ordered = (): ScenarioResult[] =>
      (Object.keys(SCENARIOS) as ScenarioName[]).flatMap((n) => results.get(n) ?? []);
    await mkdir(values.out, { recursive: true });
    // Sections written by hand (between the markers) are kept when the report is written again.
    const mdPath = path.join(values.out, 'benchmarks.md');
    const kept = existsSync(mdPath) ? keptSection(await readFile(mdPath, 'utf8')) : undefined;
    for (const name of names) {
      log.info({ scenario: name, runs, quick: values.quick }, 'running');
      const started = Date.now();
      const machine = watchMachine();
      const result = await SCENARIOS[name](options);
      const busy = machine();
      result.notes.push(busy.note);
      if (Object.keys(stackEnv).length > 0)
        result.notes.push(
          `Run with ${Object.entries(stackEnv)
            .map(([k, v]) => `${k}=${v}`)
            .join(' ')} for the stack.`,
        );
      if (values.pin) result.notes.push('Run with --pin: vLLM on CPU 1, the system and the client on CPU 0.');
      // Some scenarios measure once whatever --runs says (a history size does not vary): say how often they did.
      const measured = Math.max(1, ...result.metrics.map((m) => m.values.length));
      results.set(name, {
        ...result,
        runs: Math.min(runs, measured),
        date: new Date().toISOString(),
        quick: values.quick,
        machine: machineText(),
      });
      log.info({ scenario: name, seconds: Math.round((Date.now() - started) / 1000) }, 'done');
      // Written after each scenario, so one that fails late loses nothing measured before it.
      await writeFile(jsonPath, toJson(ordered()));
      await writeFile(mdPath, toMarkdown(ordered(), kept));
    }
    process.stdout.write(toMarkdown(ordered()).split('\n## ')[0] ?? '');
  });
}
