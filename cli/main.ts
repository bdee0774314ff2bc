// The gpu-batch command line. Batch and webhook commands go through the API (OPENAI_BASE_URL and
// OPENAI_API_KEY, as for the openai SDKs); `keys` manages API keys directly in the database (an
// operator's job, so it needs DATABASE_URL, or the local stack's embedded Postgres to be running).
import { writeFile } from 'node:fs/promises';
import { Command, Option } from 'commander';
import OpenAI from 'openai';

import { setCurationGrant } from '../api/services/curation.js';
import { createKey, listKeys, revokeKey } from '../api/services/keys.js';
import { databaseUrl, loadConfig } from '../lib/config.js';
import { createDb, dbOptions, migrateToLatest, type Db } from '../schema/db.js';
import type { CurationObject } from '../wire/curation.js';
import type { DeliveryObject, WebhookObject } from '../wire/webhooks.js';
import { EXIT, registerBatchCommands } from './batch-commands.js';

function print(json: boolean, data: unknown, human: () => string): void {
  process.stdout.write(`${json ? JSON.stringify(data, null, 2) : human()}\n`);
}

async function withDatabase<T>(use: (db: Db) => Promise<T>): Promise<T> {
  const config = loadConfig();
  const url = databaseUrl(config);
  // An operator's command: a database that is not there is said at once, not waited for.
  try {
    await migrateToLatest(url, { ...dbOptions(config), poolSize: 1 });
  } catch (err) {
    throw new Error(
      `cannot reach the database at ${url.replace(/\/\/[^@]*@/, '//')}: ${(err as Error).message}\n` +
        'Start the stack (npm start) or set DATABASE_URL.',
      { cause: err },
    );
  }
  const db = createDb(url, { ...dbOptions(config), poolSize: 1 });
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
  const program = new Command('gpu-batch')
    .description('OpenAI-compatible batch inference on your own GPUs')
    .showHelpAfterError()
    .addHelpText(
      'after',
      "\nThe API is OPENAI_BASE_URL (default: this machine's, http://127.0.0.1:$API_PORT/v1) with OPENAI_API_KEY.\n" +
        'Exit codes: 0 done and every request succeeded; 2 done but some requests failed; 1 the batch failed,\n' +
        'expired or was cancelled, or the command failed; 130 stopped watching with Ctrl-C (the batch goes on).',
    );
  const json = new Option('--json', 'machine-readable output');
  registerBatchCommands(program, { api, print });

  const keys = program.command('keys').description('create, list and revoke API keys');
  keys
    .command('create')
    .description('create an API key for a project (the key is shown once)')
    .requiredOption('--project <name>', 'project the key belongs to (created if new)')
    .option('--name <label>', 'a label to recognise the key by', 'cli')
    .addOption(json)
    .action(async (opts: { project: string; name: string; json?: boolean }) => {
      const created = await withDatabase((db) => createKey({ db }, opts.project, opts.name));
      print(opts.json === true, { id: created.id, key: created.key, project: created.project.name }, () =>
        [
          `Created key ${created.id} for project "${created.project.name}":`,
          '',
          `  ${created.key}`,
          '',
          'Store it now: it is not shown again.',
        ].join('\n'),
      );
    });
  keys
    .command('list')
    .description('list API keys (never the keys themselves)')
    .option('--project <name>', 'only this project')
    .addOption(json)
    .action(async (opts: { project?: string; json?: boolean }) => {
      const rows = await withDatabase((db) => listKeys({ db }, opts.project));
      print(opts.json === true, rows, () =>
        rows.length === 0
          ? 'No keys.'
          : rows
              .map(
                (k) =>
                  `${k.id}  ${k.project.padEnd(16)}  ${k.name.padEnd(12)}  ${k.prefix}  created ${date(k.createdAt)}  ${k.revokedAt === null ? 'active' : `revoked ${date(k.revokedAt)}`}`,
              )
              .join('\n'),
      );
    });
  keys
    .command('revoke <keyId>')
    .description('revoke an API key by its id')
    .addOption(json)
    .action(async (keyId: string, opts: { json?: boolean }) => {
      const revoked = await withDatabase((db) => revokeKey({ db }, keyId));
      if (!revoked) throw new Error(`no active key with id ${keyId}`);
      print(opts.json === true, { id: keyId, revoked: true }, () => `Revoked ${keyId}.`);
    });
  const curation = program
    .command('curation')
    .description("a batch's review in Label Studio, and the fine-tuning data it gives");
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
    .command('grant <labelStudioProjectId>')
    .description(
      "let a project import into a Label Studio project it did not make (metadata curation_project); an operator's job, like keys",
    )
    .requiredOption('--project <name>', 'the API project')
    .option('--revoke', 'take the permission back')
    .addOption(json)
    .action(async (lsProject: string, opts: { project: string; revoke?: boolean; json?: boolean }) => {
      const id = Number(lsProject);
      if (!Number.isInteger(id) || id <= 0) throw new Error(`"${lsProject}" is not a Label Studio project id`);
      const allowed = opts.revoke !== true;
      const project = await withDatabase((db) => setCurationGrant({ db }, opts.project, id, allowed));
      print(opts.json === true, { project: project.name, label_studio_project_id: id, allowed }, () =>
        allowed
          ? `Project "${project.name}" may now import into Label Studio project ${id}.`
          : `Project "${project.name}" may no longer import into Label Studio project ${id}.`,
      );
    });
  curation
    .command('export <batchId>')
    .description('accepted and corrected answers as an OpenAI chat fine-tuning JSONL dataset')
    .option('-o, --output <file>', 'write to this file instead of standard output')
    .action(async (batchId: string, opts: { output?: string }) => {
      const response = await api().get(`/batches/${batchId}/curation/export`, { __binaryResponse: true }).asResponse();
      const body = await response.text();
      const examples = body.split('\n').filter((l) => l.trim() !== '').length;
      if (opts.output === undefined) {
        process.stdout.write(body);
        process.stderr.write(`${examples} fine-tuning examples\n`);
      } else {
        await writeFile(opts.output, body);
        process.stdout.write(`${examples} fine-tuning examples written to ${opts.output}\n`);
      }
    });
  registerWebhookCommands(program, json);
  return program;
}

function registerWebhookCommands(program: Command, json: Option): void {
  const webhooks = program
    .command('webhooks')
    .description("endpoints told when this project's batches end (signed per Standard Webhooks)");
  webhooks
    .command('add <url>')
    .description('register an endpoint; its signing secret is shown once')
    .option(
      '--events <types>',
      'which events, comma-separated (default: all)',
      (value: string, previous: string[] | undefined) => [
        ...(previous ?? []),
        ...value.split(',').filter((e) => e !== ''),
      ],
    )
    .addOption(json)
    .action(async (url: string, opts: { events?: string[]; json?: boolean }) => {
      const created: WebhookObject = await api().post('/webhooks', {
        body: { url, ...(opts.events !== undefined ? { events: opts.events } : {}) },
      });
      print(opts.json === true, created, () =>
        [
          `Registered ${created.id} for ${created.events.join(', ')}:`,
          `  ${created.url}`,
          '',
          `Signing secret (shown once): ${created.secret ?? ''}`,
        ].join('\n'),
      );
    });
  webhooks
    .command('list')
    .description("the project's endpoints")
    .addOption(json)
    .action(async (opts: { json?: boolean }) => {
      const list: { data: WebhookObject[] } = await api().get('/webhooks');
      print(opts.json === true, list.data, () =>
        list.data.length === 0
          ? 'No webhook endpoints.'
          : list.data.map((w) => `${w.id}  ${w.url}  ${w.events.join(',')}`).join('\n'),
      );
    });
  webhooks
    .command('remove <webhookId>')
    .description('stop sending to an endpoint')
    .addOption(json)
    .action(async (webhookId: string, opts: { json?: boolean }) => {
      const deleted: unknown = await api().delete(`/webhooks/${webhookId}`);
      print(opts.json === true, deleted, () => `Removed ${webhookId}.`);
    });
  webhooks
    .command('deliveries <webhookId>')
    .description('the latest deliveries to an endpoint, with every attempt')
    .addOption(json)
    .action(async (webhookId: string, opts: { json?: boolean }) => {
      const list: { data: DeliveryObject[] } = await api().get(`/webhooks/${webhookId}/deliveries`);
      print(opts.json === true, list.data, () =>
        list.data.length === 0
          ? 'No deliveries yet.'
          : list.data
              .map((d) => {
                const last = d.attempts.at(-1);
                return `${d.id}  ${d.event_type.padEnd(15)} ${d.batch_id}  ${d.status.padEnd(9)} ${d.attempts.length} attempts${last === undefined ? '' : `, last ${last.status_code ?? last.error ?? ''}`}`;
              })
              .join('\n'),
      );
    });
  webhooks
    .command('redeliver <deliveryId>')
    .description('send a delivery again (one that failed, or any other)')
    .addOption(json)
    .action(async (deliveryId: string, opts: { json?: boolean }) => {
      const delivery: DeliveryObject = await api().post(`/webhooks/deliveries/${deliveryId}/redeliver`);
      print(
        opts.json === true,
        delivery,
        () => `Sending ${delivery.id} (${delivery.event_type} for ${delivery.batch_id}) again.`,
      );
    });
}

export async function main(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (err) {
    // The SDK's messages already lead with the status code; a connection error needs a hint.
    const message =
      err instanceof OpenAI.APIConnectionError
        ? `cannot reach the API at ${loadConfig().cli.apiUrl} (${err.message}); start the stack (npm start) or set OPENAI_BASE_URL`
        : (err as Error).message;
    process.stderr.write(`error: ${message}\n`);
    process.exitCode = EXIT.failed;
  }
}
