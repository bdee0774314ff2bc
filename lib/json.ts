/** A JSON object (not null, not an array): what a parsed body or line must be before its fields are read. */
export function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}
