import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

import { CurationSchemaError, loadCurationSchemas } from '../../lib/curation-schema.js';
import { buildTask, fineTuningLine, requestMessages, responseText } from '../../lib/curation-tasks.js';

const registry = loadCurationSchemas('curation-schemas');
const review = registry.get('review')!;
const label = registry.get('label')!;

const chatRequest = {
  model: 'm',
  messages: [
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: 'Capital of France?' },
  ],
};
const chatAnswer = (text: string) => ({
  object: 'chat.completion',
  choices: [{ index: 0, message: { role: 'assistant', content: text } }],
});

describe('curation schemas', () => {
  it('ship a generic review schema and a label schema, both valid', () => {
    expect(registry.names()).toEqual(['label', 'review']);
    expect(review.project).toBe('per_schema');
    expect(label.project).toBe('per_batch');
  });

  it('refuse a schema whose label config and mappings disagree, naming the file and the problem', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'schemas-'));
    const bad = {
      ...review,
      name: 'bad',
      data: { prompt: 'request.conversation' },
      predictions: [{ type: 'textarea', from_name: 'nope', to_name: 'response', value: 'response.text' }],
    };
    await writeFile(path.join(dir, 'bad.json'), JSON.stringify(bad));
    await writeFile(path.join(dir, 'misnamed.json'), JSON.stringify({ ...review, name: 'other' }));
    await writeFile(path.join(dir, 'broken.json'), '{');
    await writeFile(path.join(dir, 'incomplete.json'), JSON.stringify({ name: 'incomplete' }));
    expect(() => loadCurationSchemas(dir)).toThrow(CurationSchemaError);
    try {
      loadCurationSchemas(dir);
    } catch (err) {
      const message = (err as Error).message;
      expect(message).toContain('bad.json: label_config uses $response but data has no "response"');
      expect(message).toContain('bad.json: prediction from_name "nope" is not a tag name in label_config');
      expect(message).toContain('misnamed.json: its name is "other"; the file must be other.json');
      expect(message).toContain('broken.json: not JSON');
      expect(message).toContain('incomplete.json: title');
    }
  });
});

describe('tasks from batch results', () => {
  it('carry the prompt, the answer, a stable key and the answer pre-filled as a prediction', () => {
    const task = buildTask(review, {
      batchId: 'batch_1',
      model: 'llama',
      endpoint: '/v1/chat/completions',
      line: 7,
      customId: 'q-7',
      request: chatRequest,
      response: chatAnswer('Paris.'),
    });
    expect(task.data).toMatchObject({
      prompt: 'system: Be brief.\n\nuser: Capital of France?',
      response: 'Paris.',
      curation_key: 'batch_1:7',
      batch_id: 'batch_1',
      custom_id: 'q-7',
      model_answer: 'Paris.',
      request_messages: chatRequest.messages,
    });
    expect(task.predictions).toEqual([
      {
        model_version: 'llama',
        result: [{ from_name: 'correction', to_name: 'response', type: 'textarea', value: { text: ['Paris.'] } }],
      },
    ]);
  });

  it('pre-fill a Choices prediction only when the answer is one of the choices', () => {
    const source = {
      batchId: 'b',
      model: 'm',
      endpoint: '/v1/chat/completions',
      line: 1,
      customId: 'c',
      request: { messages: [{ role: 'user', content: 'I love it' }] },
    };
    expect(buildTask(label, { ...source, response: chatAnswer(' Positive\n') }).predictions[0]?.result).toEqual([
      { from_name: 'label', to_name: 'text', type: 'choices', value: { choices: ['positive'] } },
    ]);
    expect(buildTask(label, { ...source, response: chatAnswer('I think it is good') }).predictions).toEqual([]);
    expect(buildTask(label, { ...source, response: chatAnswer('negative') }).data.text).toBe('I love it');
  });

  it('read requests and answers of every endpoint', () => {
    expect(requestMessages('/v1/completions', { prompt: 'Once upon' })).toEqual([
      { role: 'user', content: 'Once upon' },
    ]);
    expect(responseText('/v1/completions', { choices: [{ text: ' a time' }] })).toBe(' a time');
    expect(requestMessages('/v1/responses', { instructions: 'Be kind', input: 'Hi' })).toEqual([
      { role: 'system', content: 'Be kind' },
      { role: 'user', content: 'Hi' },
    ]);
    expect(
      responseText('/v1/responses', {
        output: [{ type: 'message', content: [{ type: 'output_text', text: 'Hello' }] }],
      }),
    ).toBe('Hello');
    expect(
      requestMessages('/v1/chat/completions', {
        messages: [
          {
            role: 'user',
            content: [
              { type: 'text', text: 'look' },
              { type: 'image_url', image_url: {} },
            ],
          },
        ],
      }),
    ).toEqual([{ role: 'user', content: 'look\n[image_url]' }]);
  });
});

describe('fine-tuning lines from reviewed tasks', () => {
  const data = buildTask(review, {
    batchId: 'b',
    model: 'm',
    endpoint: '/v1/chat/completions',
    line: 1,
    customId: 'c',
    request: chatRequest,
    response: chatAnswer('Lyon'),
  }).data;
  const verdict = (choice: string) => ({
    from_name: 'verdict',
    to_name: 'response',
    type: 'choices',
    value: { choices: [choice] },
  });
  const correction = (text: string) => ({
    from_name: 'correction',
    to_name: 'response',
    type: 'textarea',
    value: { text: [text] },
  });
  const assistant = (line: string | undefined) =>
    line === undefined
      ? undefined
      : (JSON.parse(line) as { messages: { role: string; content: string }[] }).messages.at(-1);

  it('use the correction when there is one, even on a rejected answer', () => {
    const line = fineTuningLine(review, { data, annotations: [{ result: [verdict('Reject'), correction('Paris')] }] });
    expect(JSON.parse(line!)).toEqual({ messages: [...chatRequest.messages, { role: 'assistant', content: 'Paris' }] });
  });

  it('leave out a rejected answer whose pre-filled correction was left as it was', () => {
    // What Label Studio submits when a curator only ticks Reject: the prediction's text comes along.
    expect(
      fineTuningLine(review, { data, annotations: [{ result: [correction('Lyon'), verdict('Reject')] }] }),
    ).toBeUndefined();
    expect(
      assistant(fineTuningLine(review, { data, annotations: [{ result: [correction('Lyon'), verdict('Accept')] }] })),
    ).toEqual({ role: 'assistant', content: 'Lyon' });
  });

  it('keep an accepted answer as it was', () => {
    expect(assistant(fineTuningLine(review, { data, annotations: [{ result: [verdict('Accept')] }] }))).toEqual({
      role: 'assistant',
      content: 'Lyon',
    });
  });

  it('leave out rejected, skipped and unreviewed tasks, and take the latest review', () => {
    expect(fineTuningLine(review, { data, annotations: [{ result: [verdict('Reject')] }] })).toBeUndefined();
    expect(
      fineTuningLine(review, { data, annotations: [{ result: [verdict('Accept')], was_cancelled: true }] }),
    ).toBeUndefined();
    expect(fineTuningLine(review, { data, annotations: [] })).toBeUndefined();
    const both = {
      data,
      annotations: [
        { result: [verdict('Reject')], updated_at: '2026-01-02T00:00:00Z' },
        { result: [correction('Marseille')], updated_at: '2026-01-03T00:00:00Z' },
      ],
    };
    expect(assistant(fineTuningLine(review, both))?.content).toBe('Marseille');
  });
});
