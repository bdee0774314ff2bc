// What a curation schema does with a batch: how a finished request becomes a Label Studio task with
// predictions, and how a reviewed task becomes a fine-tuning example.
import { EXTRACTORS, type CurationSchema, type Extractor } from './curation-schema.js';

// --- from a batch line to a task ---------------------------------------------------------------

interface Message {
  role: string;
  content: string;
}

function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((part: unknown) => {
        const p = part as { type?: unknown; text?: unknown };
        if (typeof p.text === 'string') return p.text;
        return typeof p.type === 'string' ? `[${p.type}]` : '';
      })
      .filter((t) => t !== '')
      .join('\n');
  }
  return '';
}

/** The request as chat messages, whatever the endpoint: what a fine-tuning example starts from. */
export function requestMessages(endpoint: string, body: unknown): Message[] {
  const b = (body ?? {}) as Record<string, unknown>;
  if (endpoint === '/v1/chat/completions' && Array.isArray(b.messages)) {
    return (b.messages as { role?: unknown; content?: unknown }[]).map((m) => ({
      role: typeof m.role === 'string' ? m.role : 'user',
      content: textOf(m.content),
    }));
  }
  if (endpoint === '/v1/completions') {
    const prompt = Array.isArray(b.prompt)
      ? b.prompt.filter((p): p is string => typeof p === 'string').join('\n')
      : textOf(b.prompt);
    return [{ role: 'user', content: prompt }];
  }
  if (endpoint === '/v1/responses') {
    const messages: Message[] = typeof b.instructions === 'string' ? [{ role: 'system', content: b.instructions }] : [];
    if (typeof b.input === 'string') messages.push({ role: 'user', content: b.input });
    else if (Array.isArray(b.input)) {
      for (const item of b.input as { role?: unknown; content?: unknown }[])
        messages.push({ role: typeof item.role === 'string' ? item.role : 'user', content: textOf(item.content) });
    }
    return messages;
  }
  return [];
}

/** The model's answer as text. */
export function responseText(endpoint: string, body: unknown): string {
  const b = (body ?? {}) as Record<string, unknown>;
  const choice = Array.isArray(b.choices) ? (b.choices[0] as Record<string, unknown> | undefined) : undefined;
  if (endpoint === '/v1/chat/completions')
    return textOf((choice?.message as { content?: unknown } | undefined)?.content);
  if (endpoint === '/v1/completions') return textOf(choice?.text);
  if (endpoint === '/v1/responses' && Array.isArray(b.output)) {
    return (b.output as { content?: unknown }[])
      .flatMap((item) => (Array.isArray(item.content) ? (item.content as { type?: unknown; text?: unknown }[]) : []))
      .filter((c) => c.type === 'output_text' && typeof c.text === 'string')
      .map((c) => c.text as string)
      .join('');
  }
  return '';
}

export interface TaskSource {
  batchId: string;
  model: string;
  endpoint: string;
  line: number;
  customId: string;
  request: unknown;
  response: unknown;
}

export interface LabelStudioTask {
  data: Record<string, unknown>;
  predictions: { model_version: string; result: Record<string, unknown>[] }[];
}

/** The key every imported task carries, so a repeated import can find what is already there. */
export function curationKey(batchId: string, line: number): string {
  return `${batchId}:${line}`;
}

function extract(e: Extractor, s: TaskSource, messages: Message[], answer: string): string {
  switch (e) {
    case 'request.conversation':
      return messages.map((m) => `${m.role}: ${m.content}`).join('\n\n');
    case 'request.last_user':
      return [...messages].reverse().find((m) => m.role === 'user')?.content ?? messages.at(-1)?.content ?? '';
    case 'response.text':
      return answer;
    case 'custom_id':
      return s.customId;
    case 'model':
      return s.model;
    case 'batch_id':
      return s.batchId;
  }
}

export function buildTask(schema: CurationSchema, s: TaskSource): LabelStudioTask {
  const messages = requestMessages(s.endpoint, s.request);
  const answer = responseText(s.endpoint, s.response);
  const data: Record<string, unknown> = {};
  for (const [key, extractor] of Object.entries(schema.data)) data[key] = extract(extractor, s, messages, answer);
  // Hidden from the labelling view, used to find tasks again and to build fine-tuning examples.
  Object.assign(data, {
    curation_key: curationKey(s.batchId, s.line),
    batch_id: s.batchId,
    custom_id: s.customId,
    request_messages: messages,
    model_answer: answer,
  });
  const result: Record<string, unknown>[] = [];
  for (const p of schema.predictions) {
    if (p.type === 'textarea') {
      result.push({
        from_name: p.from_name,
        to_name: p.to_name,
        type: 'textarea',
        value: { text: [extract(p.value, s, messages, answer)] },
      });
    } else {
      const value = (isExtractor(p.value) ? extract(p.value, s, messages, answer) : p.value).trim();
      const choice = p.choices.find((c) => c.toLowerCase() === value.toLowerCase());
      if (choice !== undefined)
        result.push({ from_name: p.from_name, to_name: p.to_name, type: 'choices', value: { choices: [choice] } });
    }
  }
  return { data, predictions: result.length === 0 ? [] : [{ model_version: s.model, result }] };
}

function isExtractor(value: string): value is Extractor {
  return (EXTRACTORS as readonly string[]).includes(value);
}

// --- from a reviewed task to a fine-tuning example ------------------------------------------------

export interface ExportedTask {
  data: Record<string, unknown>;
  annotations?: {
    result?: { from_name?: string; type?: string; value?: Record<string, unknown> }[];
    was_cancelled?: boolean;
    updated_at?: string;
    created_at?: string;
  }[];
}

/**
 * An OpenAI chat fine-tuning line for a reviewed task, or undefined when the review does not make
 * it one (rejected without a correction, skipped, or not reviewed).
 */
export function fineTuningLine(schema: CurationSchema, task: ExportedTask): string | undefined {
  const annotations = (task.annotations ?? []).filter((a) => a.was_cancelled !== true);
  const latest = annotations.sort((a, b) =>
    (b.updated_at ?? b.created_at ?? '').localeCompare(a.updated_at ?? a.created_at ?? ''),
  )[0];
  if (latest === undefined) return undefined;
  const results = latest.result ?? [];
  const answerItem = results.find((r) => r.from_name === schema.export.answer_from);
  const values = answerItem?.value?.text ?? answerItem?.value?.choices;
  const curated = Array.isArray(values)
    ? values
        .filter((v): v is string => typeof v === 'string')
        .join('\n')
        .trim()
    : '';
  let answer = curated;
  if (schema.export.accept !== undefined) {
    const { from_name, choice } = schema.export.accept;
    const verdicts = results
      .filter((r) => r.from_name === from_name)
      .flatMap((r) => (Array.isArray(r.value?.choices) ? (r.value.choices as unknown[]) : []));
    const accepted = verdicts.includes(choice);
    const modelAnswer = typeof task.data.model_answer === 'string' ? task.data.model_answer : '';
    // Label Studio submits the pre-filled correction with the annotation even when the curator never
    // touched it, so a rejected answer arrives with the model's own text as its "correction".
    if (!accepted && verdicts.length > 0 && answer === modelAnswer.trim()) answer = '';
    if (answer === '' && accepted) answer = modelAnswer;
  }
  if (answer === '') return undefined;
  const messages = Array.isArray(task.data.request_messages) ? (task.data.request_messages as Message[]) : [];
  if (messages.length === 0) return undefined;
  return JSON.stringify({ messages: [...messages, { role: 'assistant', content: answer }] });
}
