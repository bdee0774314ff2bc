// Finds a Temporal CLI (which bundles the dev server and its Web UI), building one if it must:
// `temporal` on PATH → TEMPORAL_CLI_PATH → the cached build in the tools folder → `go install`.
import { loadConfig, type Config } from '../lib/config.js';
import { isEntryPoint, runEntryPoint } from '../lib/entry.js';
import { createLogger, type Logger } from '../lib/logger.js';
import { cachedToolPath, resolveGoTool, type GoTool, type GoToolOptions, type ResolvedTool } from './go-tool.js';

const MODULE = 'github.com/temporalio/cli/cmd/temporal';

export class TemporalCliNotFound extends Error {
  constructor(detail: string) {
    super(
      `No Temporal CLI could be found or built (${detail}).\n` +
        'Do one of:\n' +
        '  - install the Temporal CLI so `temporal` is on PATH (e.g. `brew install temporal`);\n' +
        '  - set TEMPORAL_CLI_PATH to a temporal binary;\n' +
        `  - install Go (https://go.dev/dl) so it can be built with \`go install ${MODULE}@<version>\`;\n` +
        '  - or set TEMPORAL_ADDRESS to use an existing Temporal server instead of a local one.',
    );
    this.name = 'TemporalCliNotFound';
  }
}

const TEMPORAL_CLI: GoTool = {
  binary: 'temporal',
  cacheName: 'temporal-cli',
  module: MODULE,
  notFound: (detail) => new TemporalCliNotFound(detail),
};

export function cachedCliPath(toolsDir: string, version: string): string {
  return cachedToolPath(TEMPORAL_CLI, toolsDir, version);
}

export function resolveTemporalCli(options: GoToolOptions): Promise<ResolvedTool> {
  return resolveGoTool(TEMPORAL_CLI, options);
}

export function cliOptions(config: Config, log: Logger): GoToolOptions {
  return {
    configuredPath: config.temporal.cliPath,
    configuredName: 'TEMPORAL_CLI_PATH',
    toolsDir: config.paths.toolsDir,
    version: config.temporal.cliVersion,
    log,
  };
}

// `npm run temporal:install`: make sure a CLI is available (CI calls this before the tests).
if (isEntryPoint(import.meta.url)) {
  runEntryPoint(async () => {
    const config = loadConfig();
    const log = createLogger('temporal-cli', config.log);
    const cli = await resolveTemporalCli(cliOptions(config, log));
    log.info({ path: cli.path, source: cli.source }, 'Temporal CLI ready');
  });
}
