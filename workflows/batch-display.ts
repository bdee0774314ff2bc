// What a person reads of a batch in the Temporal UI without opening a payload: the workflow's
// summary and details (fixed at its start: what the API knows then), its current details (redrawn
// as the batch moves: the model and request count once validated, counts, rate, ETA), and a line on
// each activity and child. Imported by workflow code and by the lifecycle modules: no I/O, no clock.
import type { ChunkPlan } from '../activities/validate.js';
import { safeText } from '../lib/sanitize.js';
import { formatBytes, formatCount } from '../lib/units.js';
import type { BatchProgress } from './messages.js';

/** Longest name shown (code points): Temporal refuses a summary over 400 bytes, and with it the batch. */
const MAX_NAME_CHARS = 60;

/**
 * Names a client or operator chose, shown as written: through the one sanitizer (control characters
 * visible, cut to MAX_NAME_CHARS), then with no markdown, links or HTML of theirs (inline marks
 * escaped, and a list or heading marker at its start).
 */
function plain(text: string): string {
  return safeText(text, MAX_NAME_CHARS)
    .replace(/[\\`*_[\]<>#|~!:]/g, (c) => `\\${c}`)
    .replace(/^([-+=])/, '\\$1')
    .replace(/^(\d+)([.)])/, '$1\\$2');
}

/** "2026-12-03 14:05:12 UTC", or "12-03 14:05:12 UTC" short: the UI shows it as written, so it says its zone. */
function formatTime(iso: string, short = false): string {
  return `${iso.slice(short ? 5 : 0, 10)} ${iso.slice(11, 19)} UTC`;
}

/** What the API knows of a batch when it starts its workflow. */
export interface BatchAtStart {
  projectName: string;
  endpoint: string;
  inputFileId: string;
  inputBytes: number;
  /** As the client wrote it ("24h"). */
  completionWindow: string;
  /** Unix seconds. */
  expiresAt: number;
  priority: number | null;
}

/** The workflow's one-line summary (its row in the list, its page's title). */
export function batchSummary(batch: BatchAtStart): string {
  return [
    plain(batch.projectName),
    batch.endpoint,
    `${formatBytes(batch.inputBytes)} input`,
    `${batch.completionWindow} window`,
  ].join(' · ');
}

/**
 * The workflow's details: the rest of what it was started with (Temporal markdown). The UI gives them
 * a panel about three lines high, so two lines.
 */
export function batchDetails(batch: BatchAtStart, fairnessKey: string): string {
  const until = formatTime(new Date(batch.expiresAt * 1000).toISOString());
  return [
    `**Project** ${plain(batch.projectName)} (fairness key ${plain(fairnessKey)}) · **Priority** ${batch.priority ?? 'default'}`,
    `**Input file** \`${batch.inputFileId}\` (${formatBytes(batch.inputBytes)}) · **Window** ${batch.completionWindow}, until ${until}`,
  ].join('\n\n');
}

const PHASE_WORDS: Record<BatchProgress['phase'], string> = {
  validating: 'validating the input file',
  in_progress: 'in progress',
  cancelling: 'cancelling (unfinished lines end as cancelled)',
  finalizing: 'finalizing (writing the output and error files)',
  done: 'done',
};

/**
 * The batch as the UI's current details show it, in the three lines its panel has room for: how far,
 * how fast and until when, what runs. `rate` in requests/s (null before a chunk ended), `ended` its
 * final status once it has one.
 */
export function batchCurrentDetails(
  progress: BatchProgress,
  plan: { model: string } | undefined,
  rate: number | null,
  ended?: string,
): string {
  const p = progress;
  const state = ended ?? (p.expired && p.phase !== 'done' ? 'expired: finishing what ran' : PHASE_WORDS[p.phase]);
  const head = `**${state}**`;
  if (plan === undefined) return head;
  const done = p.completed + p.failed;
  // Down to a tenth: "100%" only once every request is done.
  const share = p.requests > 0 ? ` (${formatCount(Math.floor((1000 * done) / p.requests) / 10)}%)` : '';
  const lines = [
    `${head} · ${formatCount(done)} of ${formatCount(p.requests)} requests done${share} · ${formatCount(p.failed)} failed`,
  ];
  const timing: string[] = [];
  if (rate !== null && p.phase !== 'done') timing.push(`**Rate** ${formatCount(rate)} requests/s`);
  if (p.eta !== null && p.phase === 'in_progress' && !p.expired) {
    timing.push(`**ETA** ${formatTime(p.eta, true)}${p.late ? ' ⚠ after the window closes' : ''}`);
  }
  if (p.expiresAt !== null && p.phase !== 'done') timing.push(`**Window** until ${formatTime(p.expiresAt, true)}`);
  if (timing.length > 0) lines.push(timing.join(' · '));
  const deadLettered = p.chunks.deadLettered > 0 ? `, ${formatCount(p.chunks.deadLettered)} dead-lettered` : '';
  lines.push(
    `**Model** ${plain(plan.model)} · **Chunks** ${formatCount(p.chunks.running)} running, ${formatCount(p.chunks.done)} of ${formatCount(p.chunks.total)} done${deadLettered}`,
  );
  return lines.join('\n\n');
}

/** "lines 1,001–1,500" (or the prefix-grouped chunk's share of them). */
function chunkLines(chunk: ChunkPlan): string {
  const span = `lines ${formatCount(chunk.firstLine)}–${formatCount(chunk.lastLine)}`;
  return chunk.members === undefined ? span : `${formatCount(chunk.requests)} requests of ${span} (a prefix group)`;
}

/** The line on a chunk's activity in the timeline: `chunk 3/40 · lines 1,001–1,500`. */
export function chunkSummary(chunk: ChunkPlan, chunks: number): string {
  return `chunk ${chunk.index + 1}/${chunks} · ${chunkLines(chunk)}`;
}

export function deadLetterSummary(chunk: ChunkPlan, chunks: number): string {
  return `dead-letter ${chunkSummary(chunk, chunks)} (out of retries)`;
}

export function validateSummary(inputBytes: number | undefined): string {
  return inputBytes === undefined ? 'validate the input file' : `validate ${formatBytes(inputBytes)}`;
}

export function draftSummary(throughLine: number): string {
  return `write output files ahead · lines 1–${formatCount(throughLine)}`;
}
