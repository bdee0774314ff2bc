// `npm run sim -- [flags]`: a simulated vLLM server. Flags override the SIM_* configuration.
import { parseArgs } from 'node:util';
import { loadConfig, type Config } from '../lib/config.js';
import { isEntryPoint, onShutdown, runEntryPoint } from '../lib/entry.js';
import { createLogger } from '../lib/logger.js';
import { parseFaultSpec } from './faults.js';
import { startSimulator, type SimulatorOptions } from './server.js';
import { parseRange } from './text.js';

const USAGE = `Usage: npm run sim -- [options]
  --host HOST                 bind address (HOST)
  --port N                    port (SIM_PORT, 8000 like vLLM)
  --served-model-name NAME    a model to serve; repeat for several (SIM_MODELS)
  --max-num-seqs N            sequences running at once; more wait (SIM_MAX_NUM_SEQS)
  --max-model-len N           context length in tokens (SIM_MAX_MODEL_LEN)
  --prefill-tokens-per-sec N  prompt processing rate (SIM_PREFILL_TOKENS_PER_SEC; 0 = instant)
  --prefill-ms N              fixed time before the first token (SIM_PREFILL_MS)
  --token-latency-ms N        time per output token (SIM_TOKEN_LATENCY_MS)
  --output-tokens N|MIN-MAX   natural answer length (SIM_OUTPUT_TOKENS)
  --faults SPEC               e.g. 429=0.1,500=0.05,retry-after=2,spike=0.01:1500,hang=0.001,drop=0.001
  --seed N                    seed for fault decisions (SIM_SEED)
  --record-requests           count requests per body at GET /control/requests`;

export function simulatorOptions(config: Config['simulator'], argv: string[]): { options: SimulatorOptions; port: number; host?: string } {
  const { values } = parseArgs({
    args: argv,
    options: {
      host: { type: 'string' },
      port: { type: 'string' },
      'served-model-name': { type: 'string', multiple: true },
      'max-num-seqs': { type: 'string' },
      'max-model-len': { type: 'string' },
      'prefill-tokens-per-sec': { type: 'string' },
      'prefill-ms': { type: 'string' },
      'token-latency-ms': { type: 'string' },
      'output-tokens': { type: 'string' },
      faults: { type: 'string' },
      seed: { type: 'string' },
      'record-requests': { type: 'boolean' },
      help: { type: 'boolean' },
    },
    strict: true,
  });
  if (values.help === true) {
    console.log(USAGE);
    process.exit(0);
  }
  const num = (flag: string, value: string | undefined, fallback: number): number => {
    if (value === undefined) return fallback;
    const n = Number(value);
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${flag} must be a non-negative number, got "${value}"`);
    return n;
  };
  const models = values['served-model-name'] ?? config.models;
  if (models.length === 0) throw new Error('serve at least one model');
  const result: { options: SimulatorOptions; port: number; host?: string } = {
    port: num('port', values.port, config.port),
    options: {
      models,
      maxNumSeqs: Math.max(1, num('max-num-seqs', values['max-num-seqs'], config.maxNumSeqs)),
      maxModelLen: num('max-model-len', values['max-model-len'], config.maxModelLen),
      prefillTokensPerSec: num('prefill-tokens-per-sec', values['prefill-tokens-per-sec'], config.prefillTokensPerSec),
      prefillMs: num('prefill-ms', values['prefill-ms'], config.prefillMs),
      tokenLatencyMs: num('token-latency-ms', values['token-latency-ms'], config.tokenLatencyMs),
      outputTokens: parseRange(values['output-tokens'] ?? config.outputTokens),
      embeddingDim: config.embeddingDim,
      faults: parseFaultSpec(values.faults ?? config.faults),
      seed: num('seed', values.seed, config.seed),
      recordRequests: values['record-requests'] === true,
    },
  };
  if (values.host !== undefined) result.host = values.host;
  return result;
}

if (isEntryPoint(import.meta.url)) {
  runEntryPoint(async () => {
    const config = loadConfig();
    const log = createLogger('vllm-sim', config.log);
    const { options, port, host } = simulatorOptions(config.simulator, process.argv.slice(2));
    const sim = await startSimulator(options, { host: host ?? config.host, port });
    log.info(
      { url: `${sim.url}/v1`, models: options.models, maxNumSeqs: options.maxNumSeqs, tokenLatencyMs: options.tokenLatencyMs },
      'vLLM simulator ready: outputs are SIMULATED, not from a model',
    );
    onShutdown(() => sim.close(), log);
  });
}
