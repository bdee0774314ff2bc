// Models: what the GPU workers that announced themselves lately serve, in OpenAI's list shape.
import { liveModels } from '../../lib/worker-registry.js';
import type { ModelList } from '../../wire/models.js';
import type { ApiDeps } from '../deps.js';

export async function listModels(deps: Pick<ApiDeps, 'db' | 'config'>): Promise<ModelList> {
  const models = await liveModels(deps.db, deps.config.gpu.heartbeatMs);
  return {
    object: 'list',
    data: models.map((m) => ({ id: m.model, object: 'model', created: m.since, owned_by: 'gpu-batch' })),
  };
}
