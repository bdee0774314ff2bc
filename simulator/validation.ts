// vLLM's request errors, as its OpenAI server words them (vLLM 0.32): FastAPI/pydantic validation
// of the body (400, type "Bad Request", param = the field's location such as "body.messages"), then
// vLLM's own checks (400, type "BadRequestError", param the bare parameter name, message ending
// "(parameter=X, value=V)"). Values print as Python prints them ("-1.0", 'hot', '<dict of 2 items>').

import { isRecord } from '../lib/json.js';

export type Json = Record<string, unknown>;

// Kept importable from here for the simulator's other modules.

/** An error answer in vLLM's shape: {"error": {"message", "type", "param", "code"}}. */
export class RequestError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
    readonly type: string = status === 404 ? 'NotFoundError' : 'BadRequestError',
  ) {
    super(message);
  }
}

/** str() of a Python float: "-1.0", "0.5", "1e-05", "1e+16". */
export function pyFloat(x: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : '-inf';
  const abs = Math.abs(x);
  if (abs !== 0 && (abs < 1e-4 || abs >= 1e16)) {
    const [mantissa = '', exponent = ''] = x.toExponential().split('e');
    const sign = exponent.startsWith('-') ? '-' : '+';
    return `${mantissa}e${sign}${exponent.replace(/^[+-]/, '').padStart(2, '0')}`;
  }
  return Number.isInteger(x) ? x.toFixed(1) : String(x);
}

/** repr() of a Python str. */
export function pyRepr(s: string): string {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = '';
  for (const ch of s) {
    if (ch === '\\') out += '\\\\';
    else if (ch === quote) out += `\\${quote}`;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (ch.charCodeAt(0) < 0x20 || ch.charCodeAt(0) === 0x7f)
      out += `\\x${ch.charCodeAt(0).toString(16).padStart(2, '0')}`;
    else out += ch;
  }
  return `${quote}${out}${quote}`;
}

/** How vLLM's validation handler shows an offending value: containers described, the rest as str(), cut at 200 characters. */
function errorInput(value: unknown): string {
  let text: string;
  if (Array.isArray(value)) text = `<list of ${value.length} items>`;
  else if (isRecord(value)) text = `<dict of ${Object.keys(value).length} items>`;
  else if (value === null || value === undefined) text = 'None';
  else if (typeof value === 'boolean') text = value ? 'True' : 'False';
  else if (typeof value === 'number') text = Number.isInteger(value) ? String(value) : pyFloat(value);
  else text = typeof value === 'string' ? value : JSON.stringify(value);
  return pyRepr(text.length > 200 ? `${text.slice(0, 200)}...[truncated]` : text);
}

interface FieldError {
  type: string;
  loc: string;
  msg: string;
  input: unknown;
  ctx?: Record<string, string>;
}

function formatFieldError(e: FieldError): string {
  const ctx =
    e.ctx === undefined
      ? ''
      : `, 'ctx': {${Object.entries(e.ctx)
          .map(([k, v]) => `${pyRepr(k)}: ${pyRepr(v)}`)
          .join(', ')}}`;
  return `{'type': ${pyRepr(e.type)}, 'loc': ${pyRepr(e.loc)}, 'msg': ${pyRepr(e.msg)}, 'input': ${errorInput(e.input)}${ctx}}`;
}

/** FastAPI's RequestValidationError as vLLM answers it: at most 10 errors listed, param = the first one's location. */
export function validationError(errors: FieldError[]): RequestError {
  const count = errors.length;
  const label = count === 1 ? 'error' : 'errors';
  let message = `${count} validation ${label}:\n`;
  message += errors
    .slice(0, 10)
    .map((e) => `  ${formatFieldError(e)}\n`)
    .join('');
  if (count > 10) message += `  ...and ${count - 10} more ${label}\n`;
  return new RequestError(400, message.trimEnd(), errors[0]?.loc ?? null, 'Bad Request');
}

/**
 * The body as FastAPI reads it: invalid JSON is a json_invalid error at the character where
 * Python's parser stopped (param "body.<offset>"); anything but an object a model_attributes_type error.
 */
export function parseBody(raw: string): Json {
  let body: unknown;
  try {
    body = JSON.parse(raw);
  } catch (err) {
    const text = (err as Error).message;
    const position = /position (\d+)/.exec(text)?.[1];
    const at = position === undefined ? raw.length : Number(position);
    const reason = /property name/i.test(text)
      ? 'Expecting property name enclosed in double quotes'
      : /after property name/i.test(text)
        ? "Expecting ':' delimiter"
        : /after (array element|property value)/i.test(text)
          ? "Expecting ',' delimiter"
          : 'Expecting value';
    throw validationError([
      { type: 'json_invalid', loc: `body.${at}`, msg: 'JSON decode error', input: {}, ctx: { error: reason } },
    ]);
  }
  if (!isRecord(body))
    throw validationError([
      {
        type: 'model_attributes_type',
        loc: 'body',
        msg: 'Input should be a valid dictionary or object to extract fields from',
        input: body,
      },
    ]);
  return body;
}

type Kind = 'str' | 'int' | 'float' | 'bool';
/** A field of a request model: its kind, and whether null is allowed (`int | None`). */
type FieldSpec = readonly [name: string, kind: Kind | 'required', nullable?: boolean];

// The scalar fields of vLLM's request models, in their order of definition (pydantic reports in
// that order); from vLLM 0.32's ChatCompletionRequest, CompletionRequest, ResponsesRequest and
// EmbeddingCompletionRequest. Nullable unless marked false. The chat and completion requests declare
// the first two groups alike, each at the same place in their order.
const SAMPLING_FIELDS: FieldSpec[] = [
  ['temperature', 'float'],
  ['top_p', 'float'],
  ['user', 'str'],
  ['top_k', 'int'],
  ['min_p', 'float'],
  ['repetition_penalty', 'float'],
  ['ignore_eos', 'bool', false],
  ['min_tokens', 'int', false],
];
const ENGINE_FIELDS: FieldSpec[] = [
  ['priority', 'int', false],
  ['request_id', 'str', false],
  ['return_token_ids', 'bool'],
  ['cache_salt', 'str'],
];
const CHAT_FIELDS: FieldSpec[] = [
  ['messages', 'required'],
  ['model', 'str'],
  ['frequency_penalty', 'float'],
  ['logprobs', 'bool'],
  ['top_logprobs', 'int', false],
  ['max_tokens', 'int'],
  ['max_completion_tokens', 'int'],
  ['n', 'int'],
  ['presence_penalty', 'float'],
  ['seed', 'int'],
  ['stream', 'bool'],
  ...SAMPLING_FIELDS,
  ['echo', 'bool', false],
  ['add_generation_prompt', 'bool', false],
  ...ENGINE_FIELDS,
];
const COMPLETION_FIELDS: FieldSpec[] = [
  ['model', 'str'],
  ['echo', 'bool'],
  ['frequency_penalty', 'float'],
  ['logprobs', 'int'],
  ['max_tokens', 'int'],
  ['n', 'int', false],
  ['presence_penalty', 'float'],
  ['seed', 'int'],
  ['stream', 'bool'],
  ['suffix', 'str'],
  ...SAMPLING_FIELDS,
  ...ENGINE_FIELDS,
];
const RESPONSES_FIELDS: FieldSpec[] = [
  ['background', 'bool'],
  ['input', 'required'],
  ['instructions', 'str'],
  ['max_output_tokens', 'int'],
  ['model', 'str'],
  ['stream', 'bool'],
  ['temperature', 'float'],
  ['top_p', 'float'],
  ['top_k', 'int'],
  ['min_p', 'float'],
  ['user', 'str'],
  ['presence_penalty', 'float'],
  ['frequency_penalty', 'float'],
  ['request_id', 'str', false],
  ['priority', 'int', false],
  ['cache_salt', 'str'],
  ['repetition_penalty', 'float'],
  ['seed', 'int'],
  ['ignore_eos', 'bool', false],
];
const EMBEDDING_FIELDS: FieldSpec[] = [
  ['dimensions', 'int'],
  ['input', 'required'],
  ['model', 'str'],
  ['user', 'str'],
  ['request_id', 'str', false],
  ['priority', 'int', false],
  ['cache_salt', 'str'],
];

export type Endpoint = 'chat' | 'completions' | 'embeddings' | 'responses';
const FIELDS: Record<Endpoint, FieldSpec[]> = {
  chat: CHAT_FIELDS,
  completions: COMPLETION_FIELDS,
  responses: RESPONSES_FIELDS,
  embeddings: EMBEDDING_FIELDS,
};

const TRUE_STRINGS = new Set(['1', 'on', 't', 'true', 'y', 'yes']);
const FALSE_STRINGS = new Set(['0', 'off', 'f', 'false', 'n', 'no']);

/** Pydantic's lax coercion of one JSON value; an error, or the coerced value. */
function coerce(kind: Kind, loc: string, value: unknown): { error: FieldError } | { value: unknown } {
  const fail = (type: string, msg: string): { error: FieldError } => ({ error: { type, loc, msg, input: value } });
  switch (kind) {
    case 'str':
      return typeof value === 'string' ? { value } : fail('string_type', 'Input should be a valid string');
    case 'float':
      if (typeof value === 'number') return { value };
      if (typeof value === 'boolean') return { value: value ? 1 : 0 };
      if (typeof value === 'string') {
        const n = Number(value.trim());
        return value.trim() !== '' && !Number.isNaN(n)
          ? { value: n }
          : fail('float_parsing', 'Input should be a valid number, unable to parse string as a number');
      }
      return fail('float_type', 'Input should be a valid number');
    case 'int': {
      if (typeof value === 'boolean') return { value: value ? 1 : 0 };
      const n =
        typeof value === 'number'
          ? value
          : typeof value === 'string' && /^\s*[+-]?\d+\s*$/.test(value)
            ? Number(value)
            : undefined;
      if (n !== undefined)
        return Number.isInteger(n)
          ? { value: n }
          : fail('int_from_float', 'Input should be a valid integer, got a number with a fractional part');
      if (typeof value === 'string')
        return fail('int_parsing', 'Input should be a valid integer, unable to parse string as an integer');
      return fail('int_type', 'Input should be a valid integer');
    }
    case 'bool':
      if (typeof value === 'boolean') return { value };
      if (value === 0 || value === 1) return { value: value === 1 };
      if (
        typeof value === 'string' &&
        (TRUE_STRINGS.has(value.toLowerCase()) || FALSE_STRINGS.has(value.toLowerCase()))
      )
        return { value: TRUE_STRINGS.has(value.toLowerCase()) };
      if (typeof value === 'string' || typeof value === 'number')
        return fail('bool_parsing', 'Input should be a valid boolean, unable to interpret input');
      return fail('bool_type', 'Input should be a valid boolean');
  }
}

const MESSAGE_TYPES = [
  'ChatCompletionDeveloperMessageParam',
  'ChatCompletionSystemMessageParam',
  'ChatCompletionUserMessageParam',
  'ChatCompletionAssistantMessageParam',
  'ChatCompletionToolMessageParam',
  'ChatCompletionFunctionMessageParam',
  'CustomChatCompletionMessageParam',
];

/** The errors pydantic gives for messages that are not role-bearing objects (the union of vLLM's message types). */
function messageErrors(messages: unknown[]): FieldError[] {
  const errors: FieldError[] = [];
  messages.forEach((m, i) => {
    const at = `body.messages.${i}`;
    if (!isRecord(m)) {
      for (const t of MESSAGE_TYPES)
        errors.push({ type: 'dict_type', loc: `${at}.${t}`, msg: 'Input should be a valid dictionary', input: m });
      errors.push({
        type: 'model_attributes_type',
        loc: `${at}.Message`,
        msg: 'Input should be a valid dictionary or object to extract fields from',
        input: m,
      });
    } else if (!('role' in m)) {
      const missing = (loc: string): FieldError => ({
        type: 'missing',
        loc: `${at}.${loc}`,
        msg: 'Field required',
        input: m,
      });
      errors.push(
        ...[
          'ChatCompletionDeveloperMessageParam',
          'ChatCompletionSystemMessageParam',
          'ChatCompletionUserMessageParam',
          'ChatCompletionAssistantMessageParam',
        ].map((t) => missing(`${t}.role`)),
        missing('ChatCompletionToolMessageParam.role'),
        missing('ChatCompletionToolMessageParam.tool_call_id'),
        missing('ChatCompletionFunctionMessageParam.name'),
        missing('ChatCompletionFunctionMessageParam.role'),
        missing('CustomChatCompletionMessageParam.role'),
        missing('Message.author'),
        missing('Message.content'),
      );
    } else if (typeof m.role !== 'string') {
      errors.push({
        type: 'string_type',
        loc: `${at}.CustomChatCompletionMessageParam.role`,
        msg: 'Input should be a valid string',
        input: m.role,
      });
    } else if (
      m.content !== undefined &&
      m.content !== null &&
      typeof m.content !== 'string' &&
      !Array.isArray(m.content)
    ) {
      errors.push({
        type: 'string_type',
        loc: `${at}.ChatCompletionDeveloperMessageParam.content`,
        msg: 'Input should be a valid string',
        input: m.content,
      });
    }
  });
  return errors;
}

/**
 * The request model's validation: required fields, scalar types (coerced as pydantic's lax mode
 * does: "0.5" is a float, true is 1), messages' shape. Throws vLLM's 400; returns the coerced body.
 */
export function validateFields(endpoint: Endpoint, body: Json): Json {
  const errors: FieldError[] = [];
  const out: Json = { ...body };
  for (const [name, kind, nullable = true] of FIELDS[endpoint]) {
    const value = body[name];
    const loc = `body.${name}`;
    if (kind === 'required') {
      // The Responses API's before-validators add one key to the body that pydantic then shows.
      if (value === undefined)
        errors.push({
          type: 'missing',
          loc,
          msg: 'Field required',
          input: endpoint === 'responses' ? { ...body, '\u0000': null } : body,
        });
      else if (name === 'messages') {
        if (!Array.isArray(value))
          errors.push({ type: 'list_type', loc, msg: 'Input should be a valid list', input: value });
        else errors.push(...messageErrors(value));
      }
      continue;
    }
    if (value === undefined || (value === null && nullable)) continue;
    const result = coerce(kind, loc, value);
    if ('error' in result) errors.push(result.error);
    else out[name] = result.value;
  }
  if (errors.length > 0) throw validationError(errors);
  return out;
}

/** vLLM's VLLMValidationError: "<message> (parameter=X, value=V)", param X. */
export function parameterError(message: string, parameter: string, value?: string): RequestError {
  const extras = [`parameter=${parameter}`, ...(value === undefined ? [] : [`value=${value}`])];
  return new RequestError(400, `${message} (${extras.join(', ')})`, parameter);
}

const num = (body: Json, key: string): number | undefined => (typeof body[key] === 'number' ? body[key] : undefined);

/**
 * SamplingParams._verify_args and the greedy check, in vLLM's order, once max_tokens is known (the
 * request's, or the room left in the context). n and the penalties name no parameter; the rest do.
 */
export function verifySampling(body: Json, n: number, maxTokens: number): void {
  if (n < 1) throw new RequestError(400, `n must be at least 1, got ${n}.`);
  const presence = num(body, 'presence_penalty') ?? 0;
  if (presence < -2 || presence > 2)
    throw new RequestError(400, `presence_penalty must be in [-2, 2], got ${pyFloat(presence)}.`);
  const frequency = num(body, 'frequency_penalty') ?? 0;
  if (frequency < -2 || frequency > 2)
    throw new RequestError(400, `frequency_penalty must be in [-2, 2], got ${pyFloat(frequency)}.`);
  const repetition = num(body, 'repetition_penalty') ?? 1;
  if (repetition <= 0)
    throw new RequestError(400, `repetition_penalty must be greater than zero, got ${pyFloat(repetition)}.`);
  const temperature = num(body, 'temperature') ?? 1;
  if (temperature < 0)
    throw parameterError(
      `temperature must be non-negative, got ${pyFloat(temperature)}.`,
      'temperature',
      pyFloat(temperature),
    );
  if (temperature > 2)
    throw parameterError(
      `temperature must be in [0, 2], got ${pyFloat(temperature)}.`,
      'temperature',
      pyFloat(temperature),
    );
  const topP = num(body, 'top_p') ?? 1;
  if (!(topP > 0 && topP <= 1))
    throw parameterError(`top_p must be in (0, 1], got ${pyFloat(topP)}.`, 'top_p', pyFloat(topP));
  const topK = num(body, 'top_k') ?? 0;
  if (topK < -1) throw new RequestError(400, `top_k must be 0 (disable), or at least 1, got ${topK}.`);
  const minP = num(body, 'min_p') ?? 0;
  if (minP < 0 || minP > 1) throw new RequestError(400, `min_p must be in [0, 1], got ${pyFloat(minP)}.`);
  if (maxTokens < 1)
    throw parameterError(`max_tokens must be at least 1, got ${maxTokens}.`, 'max_tokens', String(maxTokens));
  const minTokens = num(body, 'min_tokens') ?? 0;
  if (minTokens < 0) throw new RequestError(400, `min_tokens must be greater than or equal to 0, got ${minTokens}.`);
  if (minTokens > maxTokens)
    throw new RequestError(400, `min_tokens must be less than or equal to max_tokens=${maxTokens}, got ${minTokens}.`);
  // Zero temperature is greedy sampling, which has one answer.
  if (temperature < 1e-5 && n > 1) throw new RequestError(400, `n must be 1 when using greedy sampling, got ${n}.`);
}

/** TokenizeParams' check, before the prompt is rendered: the output limit alone over the context. */
export function checkOutputLimit(maxOutput: number | undefined, param: string, maxModelLen: number): void {
  if (maxOutput !== undefined && maxOutput > maxModelLen) {
    throw parameterError(
      `${param}=${maxOutput} cannot be greater than max_model_len=${maxModelLen}. Please request fewer output tokens.`,
      param,
      String(maxOutput),
    );
  }
}

/**
 * The prompt alone over the context. A text prompt is tokenized with truncation at max_model_len + 1,
 * so vLLM only ever reports "at least max_model_len + 1"; token ids are counted as they are.
 */
export function checkPromptLength(promptTokens: number, maxModelLen: number, fromText: boolean): void {
  if (promptTokens <= maxModelLen) return;
  const count = fromText ? maxModelLen + 1 : promptTokens;
  const qualifier = count === maxModelLen + 1 ? 'at least ' : '';
  throw parameterError(
    `This model's maximum context length is ${maxModelLen} tokens. However, your prompt contains ${qualifier}${count} input tokens, ` +
      'which exceeds this limit even without any output tokens. Please reduce the length of the input prompt.',
    'input_tokens',
    String(count),
  );
}
