// The one way text a client sent reaches Postgres or a log line when it is quoted back (in an error
// message, a log field): NUL and other control characters and lone surrogates — which Postgres refuses
// (22021, 22P05, 22P02) or which would forge log lines — are written as visible escapes, and the
// length is capped, so no input can make a write fail or a row or log line grow without bound.
// Values that must stay exact (custom_id, model, metadata) are not altered: validation refuses the
// ones that cannot be stored.

/** Default cap, in UTF-16 code units, for a quoted value. */
export const QUOTE_CHARS = 120;

function escape(code: number): string {
  return `\\u${code.toString(16).padStart(4, '0')}`;
}

/** True for text Postgres can store as given: no NUL, no lone surrogate. */
export function isStorableText(text: string): boolean {
  return !text.includes('\u0000') && text.isWellFormed();
}

/**
 * `text` made safe to store and log: control characters (but tab) and lone surrogates escaped as
 * \uXXXX, cut to `maxChars` with a note of how much was left out.
 */
export function safeText(text: string, maxChars = QUOTE_CHARS): string {
  let out = '';
  let i = 0;
  for (; i < text.length && out.length < maxChars; i++) {
    const code = text.charCodeAt(i);
    if (code >= 0xd800 && code <= 0xdbff) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        out += text.slice(i, i + 2);
        i++;
      } else out += escape(code);
    } else if (code >= 0xdc00 && code <= 0xdfff) out += escape(code);
    else if ((code < 0x20 && code !== 0x09) || code === 0x7f) out += escape(code);
    else out += text.charAt(i);
  }
  return i < text.length ? `${out}… (${text.length - i} more characters)` : out;
}

/** A short, safe description of any JSON value a client sent, for an error message: never the whole value. */
export function describeValue(value: unknown, maxChars = QUOTE_CHARS): string {
  if (typeof value === 'string') return `'${safeText(value, maxChars)}'`;
  if (value === null || typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (typeof value === 'object') return 'an object';
  return typeof value;
}

/** True when the JSON value nests deeper than `max` arrays and objects (checked without recursion). */
export function nestsDeeperThan(value: unknown, max: number): boolean {
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [current, depth] = stack.pop() as [unknown, number];
    if (typeof current !== 'object' || current === null) continue;
    if (depth + 1 > max) return true;
    const children = Array.isArray(current) ? current : Object.values(current as Record<string, unknown>);
    for (const child of children) if (typeof child === 'object' && child !== null) stack.push([child, depth + 1]);
  }
  return false;
}
