// `npm run sim -- [flags]`: a simulated vLLM server. Flags override the SIM_* configuration.
import { parseArgs } from 'node:util';

import { loadConfig, type Config } from '../lib/config.js';
import { isEntryPoint, onShutdown, runEntryPoint } from '../lib/entry.js';
import { createLogger } from '../lib/logger.js';
import { resolveCapacity } from './capacity.js';
import { parseFaultSpec } from './faults.js';
import { embeddingModelsOf, type SimulatorOptions } from './options.js';
import { startSimulator } from './server.js';
import { parseRange } from './text.js';

const USAGE = `Usage: npm run sim -- [options]
  --host HOST                     bind address (HOST)
  --port N                        port (SIM_PORT, 8000 like vLLM)
  --served-model-name NAME        a model to serve; repeat for several (SIM_MODELS)
  --embedding-model NAME          a served name that is an embedding model (served on /v1/embeddings only);
                                  repeat for several; default: the served names containing "embed"
  --max-model-len N               context length in tokens (SIM_MAX_MODEL_LEN)
  --output-tokens N|MIN-MAX       natural answer length (SIM_OUTPUT_TOKENS)
  --api-key KEY                   as vLLM's: /v1/* then needs "Authorization: Bearer KEY" (401 otherwise)
  --enable-request-id-headers     as vLLM's: an X-Request-Id header on every answer (off, as in vLLM)
 capacity (vLLM's scheduler; defaults: Llama-3.1-8B on one H100, see simulator/README.md)
  --max-num-seqs N                sequences running at once; more wait (SIM_MAX_NUM_SEQS)
  --max-num-batched-tokens N      token budget of one step (SIM_MAX_NUM_BATCHED_TOKENS)
  --block-size N                  tokens per KV block (SIM_BLOCK_SIZE)
  --num-gpu-blocks-override N     KV cache size in blocks (SIM_NUM_GPU_BLOCKS)
  --step-base-ms N                fixed time of a step (SIM_STEP_BASE_MS)
  --step-token-ms N               time per token in a step (SIM_STEP_TOKEN_MS)
  --enable-prefix-caching / --no-enable-prefix-caching   (SIM_ENABLE_PREFIX_CACHING, on)
  --enable-prompt-tokens-details  cached_tokens in usage (SIM_ENABLE_PROMPT_TOKENS_DETAILS, off)
  --scheduling-policy fcfs|priority                        (SIM_SCHEDULING_POLICY, fcfs)
  --prefill-ms N                  fixed time before a request reaches the engine (SIM_PREFILL_MS)
  --token-latency-ms N            old name of --step-base-ms (SIM_TOKEN_LATENCY_MS)
  --prefill-tokens-per-sec N      old knob: --step-token-ms = 1000 / N, 0 = free (SIM_PREFILL_TOKENS_PER_SEC)
 faults and checks
  --faults SPEC                   e.g. 429=0.1,500=0.05,retry-after=2,spike=0.01:1500,hang=0.001,drop=0.001
  --seed N                        seed for fault decisions (SIM_SEED)
  --record-requests               count requests per body at GET /control/requests`;

export function simulatorOptions(
  config: Config['simulator'],
  argv: string[],
): { options: SimulatorOptions; port: number; host?: string } {
  const { values } = parseArgs({
    args: argv,
    options: {
      host: { type: 'string' },
      port: { type: 'string' },
      'served-model-name': { type: 'string', multiple: true },
      'embedding-model': { type: 'string', multiple: true },
      'api-key': { type: 'string', multiple: true },
      'enable-request-id-headers': { type: 'boolean' },
      'max-num-seqs': { type: 'string' },
      'max-model-len': { type: 'string' },
      'max-num-batched-tokens': { type: 'string' },
      'block-size': { type: 'string' },
      'num-gpu-blocks-override': { type: 'string' },
      'step-base-ms': { type: 'string' },
      'step-token-ms': { type: 'string' },
      'enable-prefix-caching': { type: 'boolean' },
      'no-enable-prefix-caching': { type: 'boolean' },
      'enable-prompt-tokens-details': { type: 'boolean' },
      'scheduling-policy': { type: 'string' },
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
  const optionalNum = (flag: string, value: string | undefined): number | undefined =>
    value === undefined ? undefined : num(flag, value, 0);
  const int = (flag: string, value: string | undefined, fallback: number): number => {
    const n = num(flag, value, fallback);
    if (!Number.isInteger(n) || n < 1)
      throw new Error(`--${flag} must be a positive integer, got "${value ?? fallback}"`);
    return n;
  };
  const embeddingModels =
    values['embedding-model'] ?? (config.embeddingModels.length > 0 ? config.embeddingModels : undefined);
  const models = [...new Set([...(values['served-model-name'] ?? config.models), ...(embeddingModels ?? [])])];
  if (models.length === 0) throw new Error('serve at least one model');
  const policy = values['scheduling-policy'] ?? config.schedulingPolicy;
  if (policy !== 'fcfs' && policy !== 'priority')
    throw new Error(`--scheduling-policy must be fcfs or priority, got "${policy}"`);
  // The new knobs win over the old ones; flags over SIM_ variables (which lib/config.ts resolves the same way).
  const legacyRate = optionalNum('prefill-tokens-per-sec', values['prefill-tokens-per-sec']);
  const stepBaseMs =
    optionalNum('step-base-ms', values['step-base-ms']) ??
    optionalNum('token-latency-ms', values['token-latency-ms']) ??
    config.stepBaseMs;
  const stepTokenMs =
    optionalNum('step-token-ms', values['step-token-ms']) ??
    (legacyRate === undefined ? config.stepTokenMs : legacyRate > 0 ? 1000 / legacyRate : 0);
  const options: SimulatorOptions = {
    models,
    maxNumSeqs: int('max-num-seqs', values['max-num-seqs'], config.maxNumSeqs),
    maxModelLen: int('max-model-len', values['max-model-len'], config.maxModelLen),
    maxNumBatchedTokens: int('max-num-batched-tokens', values['max-num-batched-tokens'], config.maxNumBatchedTokens),
    blockSize: int('block-size', values['block-size'], config.blockSize),
    numGpuBlocks: int('num-gpu-blocks-override', values['num-gpu-blocks-override'], config.numGpuBlocks),
    enablePrefixCaching:
      values['no-enable-prefix-caching'] === true
        ? false
        : values['enable-prefix-caching'] === true
          ? true
          : config.enablePrefixCaching,
    enablePromptTokensDetails: values['enable-prompt-tokens-details'] === true || config.enablePromptTokensDetails,
    serverDevMode: config.serverDevMode,
    schedulingPolicy: policy,
    stepBaseMs,
    stepTokenMs,
    prefillMs: num('prefill-ms', values['prefill-ms'], config.prefillMs),
    outputTokens: parseRange(values['output-tokens'] ?? config.outputTokens),
    embeddingDim: config.embeddingDim,
    faults: parseFaultSpec(values.faults ?? config.faults),
    seed: num('seed', values.seed, config.seed),
    recordRequests: values['record-requests'] === true,
  };
  if (embeddingModels !== undefined) options.embeddingModels = embeddingModels;
  if (values['api-key'] !== undefined) options.apiKey = values['api-key'];
  if (values['enable-request-id-headers'] === true) options.enableRequestIdHeaders = true;
  const result: { options: SimulatorOptions; port: number; host?: string } = {
    port: num('port', values.port, config.port),
    options,
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
    const { scheduler, timing } = resolveCapacity(options);
    log.info(
      {
        url: `${sim.url}/v1`,
        models: options.models,
        embeddingModels: [...embeddingModelsOf(options)],
        apiKey: options.apiKey === undefined ? 'none' : 'required on /v1/*',
        maxNumSeqs: scheduler.maxNumSeqs,
        maxNumBatchedTokens: scheduler.maxNumBatchedTokens,
        kvCacheTokens: (scheduler.numGpuBlocks - 1) * scheduler.blockSize,
        stepMs: `${timing.stepBaseMs} + ${timing.stepTokenMs} x tokens`,
        prefixCaching: scheduler.enablePrefixCaching,
        schedulingPolicy: scheduler.policy,
      },
      'vLLM simulator ready: outputs are SIMULATED, not from a model',
    );
    onShutdown(() => sim.close(), log);
  });
}
