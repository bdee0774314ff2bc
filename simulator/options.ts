// What a simulator is: the vLLM release it copies, and its options. The options that are also
// configuration (SIM_* variables, lib/config.ts) take their type from Config['simulator'], so each is
// declared once; the rest are the simulator's own (flags, or settings only tests use).
import type { Config } from '../lib/config.js';
import type { CapacityOptions } from './capacity.js';
import type { Faults } from './faults.js';

/** The vLLM release whose HTTP behaviour the simulator copies (what GET /version answers). */
export const VLLM_VERSION = '0.32.0';

type SimulatorConfig = Config['simulator'];

export interface SimulatorOptions
  extends
    CapacityOptions,
    Pick<SimulatorConfig, 'models' | 'embeddingDim'>,
    Partial<Pick<SimulatorConfig, 'enablePromptTokensDetails' | 'prefillMs' | 'seed' | 'serverDevMode'>> {
  /**
   * Which served names are embedding (pooling) models; the others are generative. vLLM mounts
   * /v1/embeddings only for a pooling model, and chat, completions and responses only for a
   * generative one (404 {"detail":"Not Found"} otherwise). Default: the names containing "embed".
   */
  embeddingModels?: string[];
  /** vLLM's --api-key (one or several): then /v1/* answers 401 {"error":"Unauthorized"} without `Authorization: Bearer <key>`. */
  apiKey?: string | string[];
  /** vLLM's --enable-request-id-headers: an X-Request-Id header on every answer (the client's, or a new one). Off by default, as in vLLM. */
  enableRequestIdHeaders?: boolean;
  /** How long an idle keep-alive connection stays open, ms (vLLM's VLLM_HTTP_TIMEOUT_KEEP_ALIVE: 5 s). */
  keepAliveTimeoutMs?: number;
  /** Where a sequence would stop by itself (its EOS), in tokens; max_tokens and the context cut it shorter. */
  outputTokens: { min: number; max: number };
  faults?: Faults;
  /** Keep a count of requests per body, for tests that check nothing is sent twice. */
  recordRequests?: boolean;
}

export type ModelKind = 'generate' | 'embed';

/** The served names that are embedding models (the option, or the names containing "embed"). */
export function embeddingModelsOf(options: Pick<SimulatorOptions, 'models' | 'embeddingModels'>): Set<string> {
  return new Set(options.embeddingModels ?? options.models.filter((m) => /embed/i.test(m)));
}
