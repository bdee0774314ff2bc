// Benchmark results: each metric measured over several runs, summarised as min / median / max,
// written as JSON (for machines) and a markdown table (for docs/benchmarks.md).
import { cpus, totalmem } from 'node:os';

export interface Target {
  /** The metric must be at least (`>=`) or at most (`<=`) this. */
  op: '>=' | '<=';
  value: number;
}

export interface Metric {
  name: string;
  unit: string;
  values: number[];
  target?: Target;
  /** Which way is better, for reading the table. */
  better: 'higher' | 'lower';
}

export interface ScenarioResult {
  name: string;
  title: string;
  setup: string;
  metrics: Metric[];
  notes: string[];
  /** Filled in by the runner. */
  runs?: number;
  date?: string;
  quick?: boolean;
  /** The machine it was measured on, in words (scenarios measured on different days may differ). */
  machine?: string;
}

export interface Summary {
  min: number;
  median: number;
  max: number;
}

export function summarise(values: number[]): Summary {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 === 1 ? (sorted[mid] ?? 0) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
  return { min: sorted[0] ?? 0, median, max: sorted.at(-1) ?? 0 };
}

/** Judged on the median run. */
export function meets(metric: Metric): boolean | undefined {
  if (metric.target === undefined) return undefined;
  const { median } = summarise(metric.values);
  return metric.target.op === '>=' ? median >= metric.target.value : median <= metric.target.value;
}

function fmt(n: number): string {
  if (Number.isInteger(n) || Math.abs(n) >= 100) return Math.round(n).toLocaleString('en-US');
  if (Math.abs(n) >= 10) return n.toFixed(1);
  return n.toFixed(3).replace(/\.?0+$/, '') || '0';
}

/** The machine in words, as each section of the report names it. */
export function machineText(): string {
  const m = machine();
  return `${m.cpus} × ${m.cpu}, ${m.memoryGb} GiB, Node ${m.node}`;
}

export function machine(): Record<string, string | number> {
  return {
    cpus: cpus().length,
    cpu: cpus()[0]?.model ?? 'unknown',
    memoryGb: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    platform: process.platform,
  };
}

export function toJson(results: ScenarioResult[]): string {
  return `${JSON.stringify(
    {
      date: new Date().toISOString(),
      machine: machine(),
      scenarios: results.map((r) => ({
        ...r,
        metrics: r.metrics.map((m) => ({ ...m, ...summarise(m.values), met: meets(m) })),
      })),
    },
    null,
    2,
  )}\n`;
}

export const KEPT_START = '<!-- written by hand: kept when npm run bench writes this file again -->';
export const KEPT_END = '<!-- end of the part written by hand -->';

/** The hand-written part of a report (markers included), if it has one. */
export function keptSection(markdown: string): string | undefined {
  const start = markdown.indexOf(KEPT_START);
  const end = markdown.indexOf(KEPT_END);
  return start >= 0 && end > start ? markdown.slice(start, end + KEPT_END.length) : undefined;
}

export function toMarkdown(results: ScenarioResult[], kept?: string): string {
  const lines = [
    '# Benchmarks',
    '',
    'Measured by `npm run bench`; each section below names the day it was measured and, since 2026-12-04, the machine.',
    "Targets are judged on the median run. The engine is the vLLM simulator (vLLM's v1 scheduler, calibrated",
    'to an H100 serving Llama-3.1-8B: `simulator/README.md`), except in "Real vLLM (CPU)", which runs vLLM\'s',
    'CPU build; everything else is the real stack, each part its own process. Reproduce with `npm run bench`',
    '(about 90 minutes), or one scenario with `npm run bench -- --scenario ceiling`; on a machine with an',
    'NVIDIA GPU, `bench/gpu/overhead.sh` runs the overhead scenario on real vLLM with a real model.',
    '',
    '| Scenario | Metric | Target | Min | Median | Max | Met |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const r of results) {
    for (const metric of r.metrics) {
      const s = summarise(metric.values);
      const target = metric.target === undefined ? '' : `${metric.target.op} ${fmt(metric.target.value)}`;
      const met = meets(metric);
      lines.push(
        `| ${r.title} | ${metric.name} (${metric.unit}) | ${target} | ${fmt(s.min)} | ${fmt(s.median)} | ${fmt(s.max)} | ${met === undefined ? '' : met ? 'yes' : '**no**'} |`,
      );
    }
  }
  lines.push('');
  if (kept !== undefined) lines.push(kept, '');
  for (const r of results) {
    const when =
      r.date === undefined
        ? ''
        : ` Measured ${r.date.slice(0, 10)}${r.machine === undefined ? '' : ` on ${r.machine}`}, ${r.runs ?? 1} run${r.runs === 1 ? '' : 's'}${r.quick === true ? ' (--quick)' : ''}.`;
    lines.push(`## ${r.title}`, '', `${r.setup}${when}`, '');
    for (const note of r.notes) lines.push(`- ${note}`);
    if (r.notes.length > 0) lines.push('');
  }
  return `${lines.join('\n')}\n`;
}
