// A batch's import into Label Studio as a test sees it: through the API, as `gpu-batch curation status` does.
import type { CurationObject } from '../../wire/curation.js';
import type { TestStack } from './stack.js';

export async function curationOf(stack: TestStack, batchId: string): Promise<CurationObject> {
  return await stack.openai.get(`/batches/${batchId}/curation`);
}

/** Polls the batch's curation state until `done` says so (by default: the import has ended, however). */
export async function waitForCuration(
  stack: TestStack,
  batchId: string,
  done = (c: CurationObject) => ['completed', 'skipped', 'failed'].includes(c.status),
  timeoutMs = 120_000,
): Promise<CurationObject> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const c = await curationOf(stack, batchId);
    if (done(c)) return c;
    if (Date.now() > deadline)
      throw new Error(`curation of ${batchId} still ${c.status} (${c.pages_done}/${c.pages_total} pages)`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
