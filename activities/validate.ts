// Checks a whole batch input file before any request runs, streaming it line by line: only the
// custom_ids seen so far are kept, never the lines. Reports every problem (up to a cap) with
// OpenAI's codes, and on success plans the chunks as line and byte ranges.
import { isRecord } from '../lib/json.js';
import { isBlank, type Line } from '../lib/jsonl.js';
import { describeValue, isStorableText, nestsDeeperThan, safeText } from '../lib/sanitize.js';
import type { ValidationError } from '../schema/tables.js';
import { addLine, type LineRange } from './line-ranges.js';
import { PrefixIndex, prefixKey, type PrefixSettings } from './prefix-groups.js';

export interface ChunkPlan extends LineRange {
  index: number;
  /** Requests in the chunk (blank lines are not requests). */
  requests: number;
  /**
   * A prefix-grouped chunk: the file-store object listing its lines (prefix-groups.ts), which are only
   * some of its span's. Absent: every request line of the span is the chunk's.
   */
  members?: string;
}

export interface ValidationParams {
  endpoint: string;
  maxRequests: number;
  maxErrors: number;
  chunkSize: number;
  /** Deepest nesting of arrays and objects a line may have (deeper would not serialise again). */
  maxDepth: number;
  /** Longest custom_id, in characters. */
  maxCustomIdChars: number;
  /** For messages: the line length cap readLines applied. */
  maxLineBytes: number;
  /** Most inputs in one embeddings request (OpenAI's: 2,048). */
  maxEmbeddingInputs: number;
  /** Index each request's prompt prefix, for a prefix-grouped plan. */
  prefix?: PrefixSettings;
}

export interface ValidationOutcome {
  errors: ValidationError[];
  requests: number;
  model: string | null;
  /** Line of the first request, where a model problem is reported. */
  modelLine: number | null;
  chunks: ChunkPlan[];
  /** With `prefix`: every request line's place and prefix. */
  prefixes?: PrefixIndex;
}

/** Inputs an embeddings request asks for: OpenAI's 50,000 limit counts these, not lines. */
function embeddingInputs(body: Record<string, unknown>): number {
  const input = body.input;
  if (Array.isArray(input) && input.length > 0 && input.every((x) => typeof x !== 'number')) return input.length;
  return 1;
}

type Report = (code: string, message: string, param?: string | null) => void;

/** The checks of one line; every message quotes what the client sent only through safeText. */
function checkLine(
  line: Line,
  params: ValidationParams,
  state: { seen: Set<string>; model: string | null; keepIds: boolean },
  report: Report,
): { model?: string; units: number; body?: Record<string, unknown> } {
  // `units` counts toward the request limit; a line that is not a request object counts for none.
  if (line.problem === 'too_long') {
    report(
      'invalid_request',
      `This line is ${line.end - line.start} bytes long, more than the ${params.maxLineBytes}-byte limit for one request.`,
    );
    return { units: 0 };
  }
  if (line.problem === 'not_utf8') {
    report('invalid_json_line', 'This line is not valid UTF-8 text; batch files must be UTF-8 encoded JSON lines.');
    return { units: 0 };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(line.text);
  } catch (err) {
    report('invalid_json_line', `This line is not parseable as valid JSON: ${safeText((err as Error).message)}`);
    return { units: 0 };
  }
  if (!isRecord(parsed)) {
    report('invalid_json_line', 'Each line must be a JSON object with custom_id, method, url and body.');
    return { units: 0 };
  }
  if (nestsDeeperThan(parsed, params.maxDepth)) {
    report('invalid_request', `This line nests arrays and objects more than ${params.maxDepth} levels deep.`);
    return { units: 0 };
  }

  const customId = parsed.custom_id;
  if (typeof customId !== 'string' || customId === '') {
    report('missing_required_parameter', 'Missing required parameter: custom_id (a non-empty string).', 'custom_id');
  } else if (customId.length > params.maxCustomIdChars) {
    report(
      'invalid_request',
      `The custom_id is ${customId.length} characters long; the limit is ${params.maxCustomIdChars}.`,
      'custom_id',
    );
  } else if (!isStorableText(customId)) {
    report(
      'invalid_request',
      `The custom_id ${describeValue(customId)} contains a NUL character or an unpaired surrogate (\\ud800-\\udfff), which cannot be stored exactly.`,
      'custom_id',
    );
  } else if (state.seen.has(customId)) {
    report(
      'duplicate_custom_id',
      `The custom_id ${describeValue(customId)} is used more than once; each must be unique within the file.`,
      'custom_id',
    );
  } else if (state.keepIds) {
    state.seen.add(customId);
  }

  if (parsed.method === undefined) {
    report('missing_required_parameter', 'Missing required parameter: method (must be POST).', 'method');
  } else if (parsed.method !== 'POST') {
    report('invalid_request', `Invalid method ${describeValue(parsed.method)}: only POST is supported.`, 'method');
  }

  if (typeof parsed.url !== 'string') {
    report('missing_required_parameter', 'Missing required parameter: url.', 'url');
  } else if (parsed.url !== params.endpoint) {
    report(
      'invalid_url',
      `The url ${describeValue(parsed.url)} does not match the batch endpoint '${params.endpoint}'.`,
      'url',
    );
  }

  const body = parsed.body;
  if (!isRecord(body)) {
    report('missing_required_parameter', 'Missing required parameter: body (a JSON object).', 'body');
    return { units: 0 };
  }
  let model: string | undefined;
  if (typeof body.model !== 'string' || body.model === '') {
    report('missing_required_parameter', 'Missing required parameter: body.model.', 'body.model');
  } else if (body.model.length > 256 || !isStorableText(body.model)) {
    report(
      'invalid_request',
      `body.model ${describeValue(body.model)} is not a model name (at most 256 characters, no NUL or unpaired surrogate).`,
      'body.model',
    );
  } else if (state.model !== null && body.model !== state.model) {
    report(
      'mismatched_model',
      `The model ${describeValue(body.model)} differs from ${describeValue(state.model)} used earlier in the file; a batch uses one model.`,
      'body.model',
    );
  } else {
    model = body.model;
  }
  if (body.stream === true) {
    report('streaming_unsupported', 'Streaming is not supported in a batch; remove body.stream.', 'body.stream');
  }
  const units = params.endpoint === '/v1/embeddings' ? embeddingInputs(body) : 1;
  // A list of texts (or of token lists) is that many inputs; one embeddings request takes a bounded number.
  if (units > params.maxEmbeddingInputs) {
    report(
      'invalid_request',
      `body.input has ${units} inputs; one embeddings request takes at most ${params.maxEmbeddingInputs}.`,
      'body.input',
    );
  }
  return model === undefined ? { units, body } : { model, units, body };
}

/** A line's prefix key; a body it cannot read (a bug of ours) is planned without one, never failing the batch. */
function keyOrNone(body: Record<string, unknown> | undefined, settings: PrefixSettings): string | null {
  if (body === undefined) return null;
  try {
    return prefixKey(body, settings);
  } catch {
    return null;
  }
}

export async function validateLines(lines: AsyncIterable<Line>, params: ValidationParams): Promise<ValidationOutcome> {
  const errors: ValidationError[] = [];
  let suppressed = 0;
  const report = (code: string, message: string, line: number | null, param: string | null = null): void => {
    if (errors.length < params.maxErrors) errors.push({ code, message, param, line });
    else suppressed++;
  };

  const state = { seen: new Set<string>(), model: null as string | null, keepIds: true };
  const chunks: ChunkPlan[] = [];
  let requests = 0;
  let units = 0;
  let modelLine: number | null = null;
  let tooMany = false;
  const prefixes = params.prefix === undefined ? undefined : new PrefixIndex();

  for await (const line of lines) {
    if (isBlank(line)) continue;
    requests++;
    addLine(
      chunks,
      line,
      (last) => last.requests >= params.chunkSize,
      (index) => ({ index, requests: 0 }),
    ).requests++;

    let checked: { model?: string; units: number; body?: Record<string, unknown> };
    try {
      checked = checkLine(line, params, state, (code, message, param = null) => {
        report(code, message, line.number, param);
      });
    } catch (err) {
      // A check that throws is a bug of ours, but it must end as this line's error, not a stuck batch.
      report(
        'invalid_request',
        `This line could not be checked: ${safeText(err instanceof Error ? err.message : String(err))}`,
        line.number,
      );
      checked = { units: 0 };
    }
    if (checked.model !== undefined && state.model === null) {
      state.model = checked.model;
      modelLine = line.number;
    }
    units += checked.units;
    // Not past the limit: the batch fails then, and the index would only cost memory.
    if (prefixes !== undefined && params.prefix !== undefined && !tooMany)
      prefixes.add(line, keyOrNone(checked.body, params.prefix));
    if (!tooMany && units > params.maxRequests) {
      tooMany = true;
      // The batch fails anyway: keeping every later custom_id would only cost memory.
      state.keepIds = false;
      state.seen.clear();
      const what = params.endpoint === '/v1/embeddings' ? 'embedding inputs' : 'requests';
      report(
        'too_many_tasks',
        `The file has more than ${params.maxRequests} ${what}, the limit for one batch.`,
        line.number,
      );
    }
  }

  if (requests === 0) report('empty_batch', 'The input file contains no requests.', null);
  if (suppressed > 0) {
    errors.push({
      code: 'too_many_errors',
      message: `${suppressed} more errors were found and are not listed.`,
      param: null,
      line: null,
    });
  }
  return { errors, requests, model: state.model, modelLine, chunks, ...(prefixes === undefined ? {} : { prefixes }) };
}

/**
 * Requests per chunk for a batch: the configured size, smaller when that would leave too few chunks to
 * share out evenly between the model's GPU workers (in the last wave most of them would sit idle while
 * a few finish), but never so small that one chunk cannot fill a worker's in-flight slots by itself.
 */
export function chunkSizeFor(o: {
  requests: number;
  workers: number;
  chunkSize: number;
  chunksPerWorker: number;
  minChunkSize: number;
}): number {
  if (o.workers <= 1) return o.chunkSize;
  const even = Math.ceil(o.requests / Math.max(1, o.workers * o.chunksPerWorker));
  return Math.max(1, Math.min(o.chunkSize, Math.max(o.minChunkSize, even)));
}

/**
 * Validation cuts the file into pieces about twenty times finer than a chunk, to be joined once the
 * chunk size is known; a divisor of the configured size, so that size is kept exactly when it stands.
 */
export function pieceSize(chunkSize: number): number {
  for (let d = Math.ceil(chunkSize / 20); d > 1; d--) if (chunkSize % d === 0) return d;
  return 1;
}

/** Joins runs of adjacent pieces into chunks of about `size` requests (whole pieces, at least one each). */
export function joinPieces(pieces: ChunkPlan[], size: number): ChunkPlan[] {
  const perChunk = Math.max(1, Math.floor(size / Math.max(1, pieces[0]?.requests ?? 1)));
  const chunks: ChunkPlan[] = [];
  for (let at = 0; at < pieces.length; at += perChunk) {
    const run = pieces.slice(at, at + perChunk);
    const first = run[0];
    const last = run.at(-1);
    if (first === undefined || last === undefined) break;
    chunks.push({
      index: chunks.length,
      firstLine: first.firstLine,
      lastLine: last.lastLine,
      requests: run.reduce((n, p) => n + p.requests, 0),
      byteStart: first.byteStart,
      byteEnd: last.byteEnd,
    });
  }
  return chunks;
}
