/** Anything thrown, as an Error (a thrown string or object becomes the message). */
export function asError(x: unknown): Error {
  if (x instanceof Error) return x;
  return new Error(typeof x === 'string' ? x : JSON.stringify(x));
}
