// `npm run docs:config`: writes docs/configuration.md from the settings in lib/config.ts, where each
// variable is described once. tests/unit/config.test.ts fails when the file is not what this writes.
import { writeFile } from 'node:fs/promises';

import { configSettings, type Config, type Setting } from '../lib/config.js';
import { isEntryPoint, runEntryPoint } from '../lib/entry.js';

export const CONFIGURATION_DOC = 'docs/configuration.md';

/** The heading each part of Config is listed under; neighbours with the same heading share a table. */
const SECTIONS: Record<keyof Config, string> = {
  host: 'Process',
  log: 'Process',
  api: 'API',
  paths: 'Local state',
  database: 'Database',
  temporal: 'Temporal',
  files: 'Files',
  retention: 'Retention',
  batch: 'Batches',
  reconciler: 'Reconciler',
  engine: 'Engine (vLLM)',
  gpu: 'GPU workers',
  scheduling: 'Scheduling between batches and projects',
  worker: 'Workers',
  metrics: 'Metrics, health and readiness',
  webhooks: 'Webhooks',
  cli: 'Command line',
  labelStudio: 'Label Studio and curation',
  curation: 'Label Studio and curation',
  supervisor: 'Supervised processes',
  dev: '`npm start`',
  minio: 'Local MinIO',
  temporalCluster: 'Local Temporal cluster',
  simulator: 'vLLM simulator',
  vllmLocal: 'Real vLLM on the CPU',
};

export function renderConfigurationDoc(): string {
  const lines = [
    '# Configuration',
    '',
    '<!-- Written by `npm run docs:config` from lib/config.ts, where each variable is described: edit it there. -->',
    '',
    'Everything is read from the environment by `lib/config.ts` (validated; a bad value stops the process with',
    'a message naming it). Defaults run everything on one machine, bound to loopback.',
  ];
  let heading: string | undefined;
  for (const { path, setting } of configSettings()) {
    const section = SECTIONS[path[0] as keyof Config];
    if (section !== heading) {
      heading = section;
      lines.push('', `## ${section}`, '', '| Variable | Default | Meaning |', '|---|---|---|');
    }
    lines.push(`| \`${setting.env}\` | ${cell(shownDefault(setting))} | ${cell(setting.doc)} |`);
  }
  return `${lines.join('\n')}\n`;
}

function cell(text: string): string {
  return text.replaceAll('|', '\\|');
}

function shownDefault(setting: Setting): string {
  if (setting.shown !== undefined) return setting.shown;
  const value: unknown = setting.schema.parse(undefined);
  if (value === undefined) return '(unset)';
  if (value === '') return '(empty)';
  if (Array.isArray(value)) return value.length === 0 ? '(none)' : `\`${value.join(',')}\``;
  if (typeof value === 'number') {
    const size = readable(setting.env, value);
    return size === undefined ? `\`${value}\`` : `\`${value}\` (${size})`;
  }
  if (typeof value === 'string' || typeof value === 'boolean') return `\`${value}\``;
  throw new Error(`${setting.env}: no way to show a default of ${JSON.stringify(value)}; give it one`);
}

/** Large byte counts and durations, as a reader would say them. */
function readable(env: string, n: number): string | undefined {
  const exact = (units: [string, number][]): string | undefined => {
    for (const [unit, size] of units) if (n >= size && n % size === 0) return `${n / size} ${unit}`;
    return undefined;
  };
  if (env.endsWith('_BYTES'))
    return exact([
      ['GiB', 1024 ** 3],
      ['MiB', 1024 ** 2],
      ['KiB', 1024],
    ]);
  if (env.endsWith('_SECONDS') && n >= 3600)
    return exact([
      ['days', 86400],
      ['hours', 3600],
    ])?.replace(/^1 (day|hour)s/, '1 $1');
  if (env.endsWith('_MS') && n >= 60_000)
    return exact([
      ['hours', 3_600_000],
      ['min', 60_000],
    ])?.replace(/^1 hours/, '1 hour');
  return undefined;
}

if (isEntryPoint(import.meta.url)) {
  runEntryPoint(async () => {
    await writeFile(CONFIGURATION_DOC, renderConfigurationDoc());
    console.log(`wrote ${CONFIGURATION_DOC}`);
  });
}
