import { describe, expect, it } from 'vitest';

import { resultRow, usageOf } from '../../activities/results.js';

const ok = (raw: string) => ({
  kind: 'ok' as const,
  status: 200,
  requestId: 'req-1',
  body: JSON.parse(raw) as unknown,
  raw,
  attempts: 1,
  errors: [],
});

describe('result rows', () => {
  it('keep the engine answer byte for byte inside an OpenAI output line', () => {
    const raw =
      '{"id":"chatcmpl-1","object":"chat.completion","usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}, "x":1.50}';
    const row = resultRow('batch_1', 4, 'c"1', ok(raw));
    expect(row.output).toContain(`"body":${raw}`);
    expect(JSON.parse(row.output)).toEqual({
      id: expect.stringMatching(/^batch_req_/),
      custom_id: 'c"1',
      response: { status_code: 200, request_id: 'req-1', body: JSON.parse(raw) },
      error: null,
    });
    expect([row.input_tokens, row.output_tokens, row.ok]).toEqual([7, 3, true]);
  });

  it('never put a line break inside a JSONL line, even if the engine answer has some', () => {
    const raw = '{\n  "usage": {"prompt_tokens": 1}\n}';
    const row = resultRow('batch_1', 1, 'a', ok(raw));
    expect(row.output).not.toMatch(/[\r\n]/);
    expect(JSON.parse(row.output).response.body).toEqual({ usage: { prompt_tokens: 1 } });
  });

  it('read usage from chat, completions and responses naming', () => {
    expect(
      usageOf({
        usage: {
          prompt_tokens: 5,
          completion_tokens: 2,
          prompt_tokens_details: { cached_tokens: 1 },
          completion_tokens_details: { reasoning_tokens: 1 },
        },
      }),
    ).toEqual({ input: 5, cached: 1, output: 2, reasoning: 1 });
    expect(
      usageOf({
        usage: {
          input_tokens: 4,
          output_tokens: 6,
          input_tokens_details: { cached_tokens: 2 },
          output_tokens_details: { reasoning_tokens: 3 },
        },
      }),
    ).toEqual({ input: 4, cached: 2, output: 6, reasoning: 3 });
    expect(usageOf({ usage: null })).toEqual({ input: 0, cached: 0, output: 0, reasoning: 0 });
    expect(usageOf('nope')).toEqual({ input: 0, cached: 0, output: 0, reasoning: 0 });
  });
});
