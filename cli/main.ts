// The gpu-batch command line: one file a command group under commands/. Batch and webhook commands
// go through the API (OPENAI_BASE_URL and OPENAI_API_KEY, as for the openai SDKs); `keys` manages API
// keys directly in the database (an operator's job, so it needs DATABASE_URL, or the local stack's
// embedded Postgres to be running).
import { Command } from 'commander';
import OpenAI from 'openai';

import { loadConfig } from '../lib/config.js';
import { registerBatchCommands } from './commands/batches.js';
import { registerCurationCommands } from './commands/curation.js';
import { registerKeyCommands } from './commands/keys.js';
import { registerWebhookCommands } from './commands/webhooks.js';
import { EXIT } from './output.js';

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
  registerBatchCommands(program);
  registerKeyCommands(program);
  registerCurationCommands(program);
  registerWebhookCommands(program);
  return program;
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
