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
    // The same four counts under either naming: chat and completions say prompt/completion, responses input/output.
    const named = (input: string, output: string, [i, o, cached, reasoning]: number[]) => ({
      usage: {
        [`${input}_tokens`]: i,
        [`${output}_tokens`]: o,
        [`${input}_tokens_details`]: { cached_tokens: cached },
        [`${output}_tokens_details`]: { reasoning_tokens: reasoning },
      },
    });
    const cases: [body: unknown, usage: ReturnType<typeof usageOf>][] = [
      [named('prompt', 'completion', [5, 2, 1, 1]), { input: 5, cached: 1, output: 2, reasoning: 1 }],
      [named('input', 'output', [4, 6, 2, 3]), { input: 4, cached: 2, output: 6, reasoning: 3 }],
      [{ usage: null }, { input: 0, cached: 0, output: 0, reasoning: 0 }],
      ['nope', { input: 0, cached: 0, output: 0, reasoning: 0 }],
    ];
    for (const [body, usage] of cases) expect(usageOf(body)).toEqual(usage);
  });
});
