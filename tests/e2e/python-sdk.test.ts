// The official openai Python SDK, from PyPI, against the API: OpenAI's own client must work
// unmodified. The virtualenv is made once and kept in the tools folder.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { PYTHON_OPENAI_VERSION, pythonWithOpenAI } from '../support/python.js';
import { startTestStack, type TestStack } from '../support/stack.js';

const run = promisify(execFile);

describe('the official openai Python SDK', () => {
  let stack: TestStack;
  let python: string;
  const model = inject('services').simulatorModel;

  beforeAll(async () => {
    [stack, python] = await Promise.all([startTestStack(), pythonWithOpenAI()]);
  });
  afterAll(async () => {
    await stack.stop();
  });

  it('uploads, creates, polls, downloads, lists, cancels and deletes through the API', async () => {
    const { stdout } = await run(python, ['tests/e2e/python/sdk_flow.py'], {
      env: { ...process.env, API_BASE_URL: `${stack.apiUrl}/v1`, API_KEY: stack.apiKey, MODEL: model },
      timeout: 120_000,
    });
    const report = JSON.parse(stdout) as Record<string, any>;
    expect(report.sdk_version).toBe(PYTHON_OPENAI_VERSION);
    expect(report.file).toMatchObject({ purpose: 'batch', status: 'processed' });
    expect(report.file_retrieved_same).toBe(true);
    expect(report.wait_for_processing).toBe('processed');
    expect(report.created_status).toBe('validating');
    expect(report.batch).toEqual({
      status: 'completed',
      counts: { total: 12, completed: 12, failed: 0 },
      metadata: { sdk: 'python' },
      model,
      has_usage: true,
    });
    expect(report.output_custom_ids).toEqual(Array.from({ length: 12 }, (_, i) => `py-${i}`));
    expect(report.batches_listed.length).toBeGreaterThanOrEqual(1);
    expect(report.files_listed).toContain(report.file.id);
    expect(report.models).toContain(model);
    expect(report.cancel_finished).toEqual({ status: 409, code: 'batch_not_cancellable' });
    expect(report.not_found).toEqual({ status: 404, type: 'invalid_request_error' });
    expect(report.bad_key).toBe(401);
    expect(report.deleted).toBe(true);
  });
});
