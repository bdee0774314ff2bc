// The gpu-batch command line. `keys` manages API keys directly in the database (an operator's
// job, so it needs DATABASE_URL, or the local stack's embedded Postgres to be running).
import { writeFile } from 'node:fs/promises';
import { Command, Option } from 'commander';
import OpenAI from 'openai';
import type { CurationObject } from '../api/curation.js';
import { createKey, listKeys, revokeKey } from '../api/keys.js';
import { databaseUrl, loadConfig } from '../lib/config.js';
import { openDatabase, type Db } from '../lib/db.js';

function print(json: boolean, data: unknown, human: () => string): void {
  process.stdout.write(`${json ? JSON.stringify(data, null, 2) : human()}\n`);
}

async function withDatabase<T>(use: (db: Db) => Promise<T>): Promise<T> {
  const config = loadConfig();
  const url = databaseUrl(config);
  let db: Db;
  try {
    db = await openDatabase(url, 1);
  } catch (err) {
    throw new Error(
      `cannot reach the database at ${url.replace(/\/\/[^@]*@/, '//')}: ${(err as Error).message}\n` +
        'Start the stack (npm start) or set DATABASE_URL.',
      { cause: err },
    );
  }
  try {
    return await use(db);
  } finally {
    await db.destroy();
  }
}

/** The API, as an OpenAI SDK client (it is one). */
function api(): OpenAI {
  const { apiUrl, apiKey } = loadConfig().cli;
  return new OpenAI({ baseURL: apiUrl, apiKey });
}

const date = (s: number | null): string => (s === null ? '-' : new Date(s * 1000).toISOString().replace('.000Z', 'Z'));

export function buildProgram(): Command {
  const program = new Command('gpu-batch').description('OpenAI-compatible batch inference on your own GPUs').showHelpAfterError();
  const json = new Option('--json', 'machine-readable output');

  const keys = program.command('keys').description('create, list and revoke API keys');
  keys
    .command('create')
    .description('create an API key for a project (the key is shown once)')
    .requiredOption('--project <name>', 'project the key belongs to (created if new)')
    .option('--name <label>', 'a label to recognise the key by', 'cli')
    .addOption(json)
    .action(async (opts: { project: string; name: string; json?: boolean }) => {
      const created = await withDatabase((db) => createKey(db, opts.project, opts.name));
      print(opts.json === true, { id: created.id, key: created.key, project: created.project.name }, () =>
        [`Created key ${created.id} for project "${created.project.name}":`, '', `  ${created.key}`, '', 'Store it now: it is not shown again.'].join('\n'),
      );
    });
  keys
    .command('list')
    .description('list API keys (never the keys themselves)')
    .option('--project <name>', 'only this project')
    .addOption(json)
    .action(async (opts: { project?: string; json?: boolean }) => {
      const rows = await withDatabase((db) => listKeys(db, opts.project));
      print(opts.json === true, rows, () =>
        rows.length === 0
          ? 'No keys.'
          : rows.map((k) => `${k.id}  ${k.project.padEnd(16)}  ${k.name.padEnd(12)}  ${k.prefix}  created ${date(k.createdAt)}  ${k.revokedAt === null ? 'active' : `revoked ${date(k.revokedAt)}`}`).join('\n'),
      );
    });
  keys
    .command('revoke <keyId>')
    .description('revoke an API key by its id')
    .addOption(json)
    .action(async (keyId: string, opts: { json?: boolean }) => {
      const revoked = await withDatabase((db) => revokeKey(db, keyId));
      if (!revoked) throw new Error(`no active key with id ${keyId}`);
      print(opts.json === true, { id: keyId, revoked: true }, () => `Revoked ${keyId}.`);
    });
  const curation = program.command('curation').description("a batch's review in Label Studio, and the fine-tuning data it gives");
  curation
    .command('status <batchId>')
    .description('where the import into Label Studio stands')
    .addOption(json)
    .action(async (batchId: string, opts: { json?: boolean }) => {
      const c = (await api().get(`/batches/${batchId}/curation`)) as CurationObject;
      print(opts.json === true, c, () =>
        [
          `Curation of ${batchId}: ${c.status}${c.reason === null ? '' : ` (${c.reason})`}`,
          `  tasks imported ${c.tasks_imported}/${c.tasks_total}, pages ${c.pages_done}/${c.pages_total}, reviewed ${c.reviewed}`,
          ...(c.label_studio_url === null ? [] : [`  review at ${c.label_studio_url}`]),
        ].join('\n'),
      );
    });
  curation
    .command('export <batchId>')
    .description('accepted and corrected answers as an OpenAI chat fine-tuning JSONL dataset')
    .option('-o, --output <file>', 'write to this file instead of standard output')
    .action(async (batchId: string, opts: { output?: string }) => {
      const response = await api().get(`/batches/${batchId}/curation/export`, { __binaryResponse: true }).asResponse();
      const body = await response.text();
      const examples = response.headers.get('x-examples') ?? '0';
      const reviewed = response.headers.get('x-reviewed-tasks') ?? '0';
      if (opts.output === undefined) {
        process.stdout.write(body);
        process.stderr.write(`${examples} fine-tuning examples from ${reviewed} reviewed tasks\n`);
      } else {
        await writeFile(opts.output, body);
        process.stdout.write(`${examples} fine-tuning examples from ${reviewed} reviewed tasks written to ${opts.output}\n`);
      }
    });
  return program;
}

export async function main(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (err) {
    const message = err instanceof OpenAI.APIError ? `${err.status ?? ''} ${err.message}`.trim() : (err as Error).message;
    process.stderr.write(`error: ${message}\n`);
    process.exitCode = 1;
  }
}
