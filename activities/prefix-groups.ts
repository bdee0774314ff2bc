// Prefix-aware planning: lines whose prompts start alike (one system prompt, or the same first
// characters) are planned into the same chunks, so an engine computes that prefix once and serves
// the rest of the group from its prefix cache instead of evicting it for the other groups' prefixes
// in between. Results stay keyed by input line, so the output keeps the input's order.
import { createHash, randomBytes } from 'node:crypto';

import { readBytes, writeBytes, type FileStore } from '../lib/file-store.js';
import { isRecord } from '../lib/json.js';
import type { Line } from '../lib/jsonl.js';
import type { LineRange } from './line-ranges.js';
import type { ChunkPlan } from './validate.js';

export interface PrefixSettings {
  /** A system prompt at least this long is a line's prefix. */
  minChars: number;
  /** At most this much of the prompt is compared; without a system prompt, a prompt longer than this shares its first this-many characters. */
  maxChars: number;
}

/** Text of a message's content: a string, or the text parts of a list. */
function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  let text = '';
  for (const part of content) if (isRecord(part) && typeof part.text === 'string') text += part.text;
  return text;
}

/** The prompt as the engine lays it out: its instructions (system or developer messages) first, then the rest. */
function promptParts(body: Record<string, unknown>): { system: string; rest: string } {
  const messages = Array.isArray(body.messages) ? body.messages : Array.isArray(body.input) ? body.input : undefined;
  let system = typeof body.instructions === 'string' ? body.instructions : '';
  let rest = '';
  if (messages !== undefined) {
    let leading = true;
    for (const m of messages) {
      if (!isRecord(m)) continue;
      const text = contentText(m.content);
      // Only a string is a role: anything else (an object with its own toString...) is none.
      const role = typeof m.role === 'string' ? m.role : '';
      if (leading && (role === 'system' || role === 'developer')) system += `${role}\u0000${text}\u0000`;
      else {
        leading = false;
        rest += `${role}\u0000${text}\u0000`;
      }
    }
  } else if (typeof body.prompt === 'string') rest = body.prompt;
  else if (typeof body.input === 'string') rest = body.input;
  return { system, rest };
}

/**
 * The key of the prefix a request shares with others, or null when it has none worth grouping by: its
 * system prompt when that is at least `minChars` long, else the first `maxChars` characters of a longer
 * prompt. A hash, so keys cost the same whatever the prompts' length.
 */
export function prefixKey(body: unknown, s: PrefixSettings): string | null {
  if (!isRecord(body)) return null;
  const { system, rest } = promptParts(body);
  let prefix: string;
  if (system.length >= s.minChars) prefix = system.slice(0, s.maxChars);
  else if (system.length + rest.length > s.maxChars) prefix = (system + rest).slice(0, s.maxChars);
  else return null;
  return createHash('sha256').update(prefix).digest('base64url').slice(0, 16);
}

/** Where each request line is and which prefix it has, kept compactly while validation streams the file. */
export class PrefixIndex {
  private lineNumbers = new Uint32Array(1024);
  private starts = new Float64Array(1024);
  private ends = new Float64Array(1024);
  /** Index into `keys`, or -1: no shared prefix. */
  private groups = new Int32Array(1024);
  private readonly keys = new Map<string, number>();
  private readonly counts: number[] = [];
  length = 0;

  add(line: Line, key: string | null): void {
    if (this.length === this.lineNumbers.length) this.grow();
    let group = -1;
    if (key !== null) {
      group = this.keys.get(key) ?? this.keys.size;
      if (group === this.keys.size) {
        this.keys.set(key, group);
        this.counts.push(0);
      }
      this.counts[group] = (this.counts[group] ?? 0) + 1;
    }
    const i = this.length++;
    this.lineNumbers[i] = line.number;
    this.starts[i] = line.start;
    this.ends[i] = line.end;
    this.groups[i] = group;
  }

  private grow(): void {
    const size = this.lineNumbers.length * 2;
    const grown = <T extends Uint32Array | Float64Array | Int32Array>(a: T, make: (n: number) => T): T => {
      const b = make(size);
      b.set(a);
      return b;
    };
    this.lineNumbers = grown(this.lineNumbers, (n) => new Uint32Array(n));
    this.starts = grown(this.starts, (n) => new Float64Array(n));
    this.ends = grown(this.ends, (n) => new Float64Array(n));
    this.groups = grown(this.groups, (n) => new Int32Array(n));
  }

  /**
   * Chunks of at most `size` requests made of runs, each run one prefix group's lines (in input order):
   * the largest `maxGroups` groups of at least `minRequests` lines first, then the other lines; or null
   * when that would not group anything the input's own order does not already (fewer than two such
   * groups, or each already in one stretch of lines).
   */
  plan(o: { size: number; maxGroups: number; minRequests: number }): GroupedPlan | null {
    const chosen = this.counts
      .map((count, group) => ({ group, count }))
      .filter((g) => g.count >= o.minRequests)
      .sort((a, b) => b.count - a.count || a.group - b.group)
      .slice(0, o.maxGroups);
    if (chosen.length < 2) return null;
    const slot = new Map(chosen.map((g, i) => [g.group, i]));
    const rest = chosen.length;
    // Each line's place: its chosen group's, or `rest`; then whether the input already keeps them together.
    const placeOf = (i: number): number => slot.get(this.groups[i] ?? -1) ?? rest;
    let stretches = 0;
    for (let i = 0, previous = -1; i < this.length; i++) {
      const place = placeOf(i);
      if (place !== rest && place !== previous) stretches++;
      previous = place;
    }
    if (stretches <= chosen.length) return null;

    const members: number[][] = Array.from({ length: rest + 1 }, () => []);
    for (let i = 0; i < this.length; i++) members[placeOf(i)]?.push(i);
    // Each group in parts of at most `size`, evenly (a group of 510 with chunks of 500 is two of 255,
    // not 500 and 10); then parts packed into chunks of up to `size`, one after another, so a chunk
    // fills the in-flight limit even when groups are small, and still sends one prefix at a time.
    const runs: GroupRun[][] = [];
    let open: GroupRun[] = [];
    let held = 0;
    const close = (): void => {
      if (open.length > 0) runs.push(open);
      open = [];
      held = 0;
    };
    for (const indices of members) {
      const parts = Math.ceil(indices.length / o.size);
      for (let p = 0; p < parts; p++) {
        const part = indices.slice(
          Math.floor((p * indices.length) / parts),
          Math.floor(((p + 1) * indices.length) / parts),
        );
        const first = part[0];
        const last = part.at(-1);
        if (first === undefined || last === undefined) continue;
        if (held + part.length > o.size) close();
        open.push({
          firstLine: this.lineNumbers[first] ?? 0,
          lastLine: this.lineNumbers[last] ?? 0,
          byteStart: this.starts[first] ?? 0,
          byteEnd: this.ends[last] ?? 0,
          lines: part.map((i) => this.lineNumbers[i] ?? 0),
        });
        held += part.length;
      }
    }
    close();
    const chunks = runs.map((chunkRuns, index): ChunkPlan => ({
      index,
      firstLine: Math.min(...chunkRuns.map((r) => r.firstLine)),
      lastLine: Math.max(...chunkRuns.map((r) => r.lastLine)),
      byteStart: Math.min(...chunkRuns.map((r) => r.byteStart)),
      byteEnd: Math.max(...chunkRuns.map((r) => r.byteEnd)),
      requests: chunkRuns.reduce((n, r) => n + r.lines.length, 0),
    }));
    return { chunks, runs, groups: chosen.map((g) => g.count) };
  }
}

/** One prefix group's lines in a chunk (in input order), with the span of the file that holds them. */
export interface GroupRun extends LineRange {
  lines: number[];
}

export interface GroupedPlan {
  /** Spans from each chunk's first line to its last; other chunks' lines lie between. */
  chunks: ChunkPlan[];
  /** Each chunk's runs, by chunk index: what the chunk sends, one run after another. */
  runs: GroupRun[][];
  /** Lines in each group planned apart, largest first. */
  groups: number[];
}

/** Chunk objects written at once while planning: a plan of a 50,000-line batch has about a hundred. */
const WRITE_AT_ONCE = 8;

/**
 * Stores each chunk's runs as an object of its own in `folder` (the batch's results folder, removed
 * with them), under a name new to this plan: a validate attempt that outlives its timeout writes its
 * own objects, never those a later attempt's plan names. Returns each chunk's key (`ChunkPlan.members`).
 */
export async function writeMembers(store: FileStore, folder: string, runs: GroupRun[][]): Promise<string[]> {
  const plan = `${folder}plan-${randomBytes(8).toString('hex')}/`;
  const keys = runs.map((_, index) => `${plan}chunk-${index}.json`);
  for (let at = 0; at < runs.length; at += WRITE_AT_ONCE) {
    await Promise.all(
      runs
        .slice(at, at + WRITE_AT_ONCE)
        .map((chunkRuns, i) => writeBytes(store, keys[at + i] ?? '', JSON.stringify({ runs: chunkRuns }))),
    );
  }
  return keys;
}

export interface ChunkMembers {
  /** Every request line of the chunk. */
  lines: ReadonlySet<number>;
  /** In the order they are sent. */
  runs: GroupRun[];
}

/** A grouped chunk's lines and runs; undefined: the chunk is every request line of its span, in order. */
export async function chunkMembers(store: FileStore, chunk: ChunkPlan): Promise<ChunkMembers | undefined> {
  if (chunk.members === undefined) return undefined;
  const stored = JSON.parse((await readBytes(store, chunk.members)).toString('utf8')) as { runs?: unknown };
  if (!Array.isArray(stored.runs)) throw new Error(`${chunk.members} lists no runs`);
  const runs = stored.runs as GroupRun[];
  const lines = new Set<number>();
  for (const run of runs) for (const line of run.lines) lines.add(line);
  return { lines, runs };
}
