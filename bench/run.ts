// `npm run bench -- [--scenario name ...] [--runs N] [--quick] [--profile]`
// Runs the benchmark scenarios and writes docs/benchmarks.json and docs/benchmarks.md. Running a
// subset of scenarios updates just those in the reports.
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { isEntryPoint, runEntryPoint } from '../lib/entry.js';
import { log } from './harness.js';
import { toJson, toMarkdown, type ScenarioResult } from './report.js';
import { SCENARIOS, type ScenarioName } from './scenarios.js';

const USAGE = `Usage: npm run bench -- [options]
  --scenario NAME   one of ${Object.keys(SCENARIOS).join(', ')} (repeatable; default: all)
  --runs N          runs per scenario (default 3)
  --quick           smaller batches, for a fast look (not for the published figures)
  --profile         write CPU profiles of the GPU workers to .data/profiles
  --out DIR         where the reports go (default docs)`;

if (isEntryPoint(import.meta.url)) {
  runEntryPoint(async () => {
    const { values } = parseArgs({
      options: {
        scenario: { type: 'string', multiple: true },
        runs: { type: 'string', default: '3' },
        quick: { type: 'boolean', default: false },
        profile: { type: 'boolean', default: false },
        out: { type: 'string', default: 'docs' },
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
    if (values.profile) await mkdir(profileDir, { recursive: true });
    const options = { runs, quick: values.quick, gpuNodeArgs: values.profile ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [] };

    const jsonPath = path.join(values.out, 'benchmarks.json');
    const previous: ScenarioResult[] = existsSync(jsonPath) ? ((JSON.parse(await readFile(jsonPath, 'utf8')) as { scenarios?: ScenarioResult[] }).scenarios ?? []) : [];
    const results = new Map(previous.map((r) => [r.name, r]));
    const ordered = (): ScenarioResult[] => (Object.keys(SCENARIOS) as ScenarioName[]).flatMap((n) => results.get(n) ?? []);
    await mkdir(values.out, { recursive: true });
    for (const name of names) {
      log.info({ scenario: name, runs, quick: values.quick }, 'running');
      const started = Date.now();
      const result = await SCENARIOS[name](options);
      // Some scenarios measure once whatever --runs says (a history size does not vary): say how often they did.
      const measured = Math.max(1, ...result.metrics.map((m) => m.values.length));
      results.set(name, { ...result, runs: Math.min(runs, measured), date: new Date().toISOString(), quick: values.quick });
      log.info({ scenario: name, seconds: Math.round((Date.now() - started) / 1000) }, 'done');
      // Written after each scenario, so one that fails late loses nothing measured before it.
      await writeFile(jsonPath, toJson(ordered()));
      await writeFile(path.join(values.out, 'benchmarks.md'), toMarkdown(ordered()));
    }
    process.stdout.write(toMarkdown(ordered()).split('\n## ')[0] ?? '');
  });
}
