// `gpu-batch top`: every batch of the project that is not finished, with its phase, progress, rate
// and ETA, redrawn in place on a terminal (like `kubectl get -w` or `top`); off a terminal, the
// table once per refresh, under the time it was taken.
import { createLogUpdate } from 'log-update';
import type OpenAI from 'openai';

import { sleep } from '../lib/abortable.js';
import { MAX_COMPLETION_WINDOW_SECONDS } from '../wire/openai.js';
import { formatDuration, progressOf, Rate, TERMINAL_STATUSES } from './progress.js';
import { pollOnce } from './watch.js';

type Batch = OpenAI.Batches.Batch;

export interface TopOptions {
  intervalMs: number;
  /** One table and return (for scripts, and a terminal that only wants a look). */
  once: boolean;
  /** At most this many of the newest batches are looked at per refresh. */
  scan: number;
  stream?: NodeJS.WriteStream;
}

/**
 * The batches that are not finished, oldest first. The API lists newest first; nothing created
 * before the longest completion window (and a day for finalizing) can still be running, so the scan
 * stops there, or at `scan` batches.
 */
export async function unfinishedBatches(
  openai: OpenAI,
  scan: number,
  signal?: AbortSignal,
  now = Date.now(),
): Promise<Batch[]> {
  const oldest = now / 1000 - MAX_COMPLETION_WINDOW_SECONDS - 86_400;
  const found: Batch[] = [];
  let seen = 0;
  for await (const batch of openai.batches.list(
    { limit: Math.min(100, scan) },
    signal === undefined ? {} : { signal },
  )) {
    if (++seen > scan || batch.created_at < oldest) break;
    if (!TERMINAL_STATUSES.has(batch.status)) found.push(batch);
  }
  return found.reverse();
}

const BAR_WIDTH = 12;

function bar(batch: Batch): string {
  const counts = batch.request_counts;
  if (counts === undefined || counts.total === 0) return '-'.repeat(BAR_WIDTH);
  const filled = Math.round((BAR_WIDTH * (counts.completed + counts.failed)) / counts.total);
  return '#'.repeat(filled) + '-'.repeat(BAR_WIDTH - filled);
}

/** The table of one refresh: a header, a row a batch, and a line of totals. */
export function renderTop(batches: Batch[], rates: Map<string, number>, now = Date.now()): string {
  const header = ['BATCH', 'MODEL', 'PHASE', 'PROGRESS', '', 'REQ/S', 'ETA', 'WINDOW LEFT'];
  const rows = batches.map((b) => {
    const p = progressOf(b, rates.get(b.id) ?? 0);
    const left = b.expires_at == null ? '--' : formatDuration(b.expires_at - now / 1000);
    return [b.id, b.model ?? '-', p.phase, `|${bar(b)}|`, p.counts, p.rate, p.eta, left];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  if (rows.length === 0) return 'No batch is running.';
  const left = batches.reduce((n, b) => {
    const c = b.request_counts;
    return c === undefined ? n : n + c.total - c.completed - c.failed;
  }, 0);
  const total = [...rates.values()].reduce((n, r) => n + r, 0);
  return [
    line(header),
    ...rows.map(line),
    '',
    `${batches.length} unfinished · ${left} requests left · ${total.toFixed(1)} req/s together`,
  ].join('\n');
}

/** Refreshes until the signal aborts (Ctrl-C), or once. */
export async function top(openai: OpenAI, options: TopOptions, signal?: AbortSignal): Promise<void> {
  const stream = options.stream ?? process.stdout;
  const live = !options.once && stream.isTTY;
  const draw = live ? createLogUpdate(stream, { showCursor: false }) : undefined;
  const rates = new Map<string, Rate>();
  try {
    for (;;) {
      // Ctrl-C ends a scan under way too, not only the wait between them.
      const batches = await pollOnce(signal, (s) => unfinishedBatches(openai, options.scan, s));
      const now = Date.now();
      const current = new Map<string, number>();
      for (const b of batches) {
        const rate = rates.get(b.id) ?? new Rate();
        rates.set(b.id, rate);
        current.set(b.id, rate.observe(b, now));
      }
      // A batch that has ended is dropped, with its rate.
      for (const id of rates.keys()) if (!current.has(id)) rates.delete(id);
      const table = renderTop(batches, current, now);
      const stamp = new Date(now).toISOString().slice(11, 19);
      if (draw !== undefined) draw(`${table}\n\n${stamp} · every ${options.intervalMs / 1000}s · Ctrl-C to stop`);
      else stream.write(options.once ? `${table}\n` : `${stamp}\n${table}\n\n`);
      if (options.once) return;
      await sleep(options.intervalMs, signal);
    }
  } finally {
    draw?.done();
  }
}
