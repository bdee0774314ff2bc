// Reading a Prometheus text exposition (vLLM's /metrics, and the system's own in benchmarks): only one
// metric's samples over its label sets, summed or at their largest, which is all a GPU worker steers by. An engine's
// answer is untrusted input: any bytes give a number (lines that do not parse are skipped), never a throw.

/** The values of the samples named `name` (every label set; `NaN` and infinite values skipped). */
export function sampleValues(exposition: string, name: string): number[] {
  const values: number[] = [];
  let from = 0;
  for (;;) {
    const at = exposition.indexOf(name, from);
    if (at < 0) return values;
    from = at + name.length;
    if (at > 0 && exposition[at - 1] !== '\n') continue;
    const end = exposition.indexOf('\n', from);
    const value = sampleValue(exposition.slice(from, end < 0 ? undefined : end));
    if (value !== undefined) values.push(value);
  }
}

/**
 * The sum of the samples named `name` over its label sets, or undefined when the exposition has none:
 * a metric the engine does not export is not a zero.
 */
export function sampleSum(exposition: string, name: string): number | undefined {
  const values = sampleValues(exposition, name);
  return values.length === 0 ? undefined : values.reduce((a, b) => a + b, 0);
}

/** The largest of the samples (a ratio per engine, such as KV cache use, does not add up), or undefined. */
export function sampleMax(exposition: string, name: string): number | undefined {
  const values = sampleValues(exposition, name);
  return values.length === 0 ? undefined : Math.max(...values);
}

/** A histogram's `_sum` and `_count` over its label sets (both counters), or undefined without both. */
export function histogramTotals(exposition: string, name: string): { sum: number; count: number } | undefined {
  const sum = sampleSum(exposition, `${name}_sum`);
  const count = sampleSum(exposition, `${name}_count`);
  return sum === undefined || count === undefined ? undefined : { sum, count };
}

/** The value of a sample line after its name: `{labels} value [timestamp]` or ` value [timestamp]`. */
function sampleValue(rest: string): number | undefined {
  let i = 0;
  if (rest[0] === '{') {
    // Label values are quoted and may hold spaces, braces and escaped quotes.
    let quoted = false;
    for (i = 1; i < rest.length; i++) {
      const c = rest[i];
      if (quoted && c === '\\') i++;
      else if (c === '"') quoted = !quoted;
      else if (!quoted && c === '}') break;
    }
    if (i >= rest.length) return undefined;
    i++;
  }
  if (rest[i] !== ' ' && rest[i] !== '\t') return undefined;
  const token =
    rest
      .slice(i)
      .trim()
      .split(/[ \t]+/, 1)[0] ?? '';
  // Number('') is 0 and Number('0x10') is 16: only the exposition's own float forms count.
  if (!/^[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?|Inf|NaN)$/.test(token)) return undefined;
  const value = Number(token);
  return Number.isFinite(value) ? value : undefined;
}
