// `gpu-batch curation`: a batch's review in Label Studio (through the API), the grant that lets a
// project import into a Label Studio project it did not make (in the database, an operator's job),
// and the fine-tuning data the review gives.
import { writeFile } from 'node:fs/promises';
import type { Command } from 'commander';

import { setCurationGrant } from '../../api/services/curation.js';
import type { CurationObject } from '../../wire/curation.js';
import { api, withDatabase } from '../clients.js';
import { idCommand, jsonOption, print } from '../output.js';

export function registerCurationCommands(program: Command): void {
  const json = jsonOption();
  const curation = program
    .command('curation')
    .description("a batch's review in Label Studio, and the fine-tuning data it gives");
  idCommand(
    curation,
    'status <batchId>',
    'where the import into Label Studio stands',
    json,
    async (batchId) => (await api().get(`/batches/${batchId}/curation`)) as CurationObject,
    (c, batchId) =>
      [
        `Curation of ${batchId}: ${c.status}${c.reason === null ? '' : ` (${c.reason})`}`,
        `  tasks imported ${c.tasks_imported}/${c.tasks_total}, pages ${c.pages_done}/${c.pages_total}, reviewed ${c.reviewed}`,
        ...(c.label_studio_url === null ? [] : [`  review at ${c.label_studio_url}`]),
      ].join('\n'),
  );
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
}
