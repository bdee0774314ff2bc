// `gpu-batch keys`: API keys, managed in the database directly (an operator's job, so it needs
// DATABASE_URL, or the local stack's embedded Postgres to be running).
import type { Command } from 'commander';

import { createKey, listKeys, revokeKey } from '../../api/services/keys.js';
import { withDatabase } from '../clients.js';
import { date, idCommand, jsonOption, print } from '../output.js';

export function registerKeyCommands(program: Command): void {
  const json = jsonOption();
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
  idCommand(
    keys,
    'revoke <keyId>',
    'revoke an API key by its id',
    json,
    async (keyId) => {
      const revoked = await withDatabase((db) => revokeKey({ db }, keyId));
      if (!revoked) throw new Error(`no active key with id ${keyId}`);
      return { id: keyId, revoked: true };
    },
    (_, keyId) => `Revoked ${keyId}.`,
  );
}
