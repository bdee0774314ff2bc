// Deterministic stand-ins for a tokenizer and a model: the same request body always yields the
// same tokens, text and vectors, so tests can compare outputs across runs and retries.
import { createHash } from 'node:crypto';

/** A 32-bit seed from any string (sha1 is plenty fast at thousands of requests a second). */
export function seedOf(text: string): number {
  return createHash('sha1').update(text).digest().readUInt32LE(0);
}

/** mulberry32: tiny, fast, good enough for picking words and vector components. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** About four characters a token, as for English with a BPE tokenizer; never zero for non-empty text. */
export function countTokens(text: string): number {
  return text.length === 0 ? 0 : Math.ceil(text.length / 4);
}

/**
 * The tokens themselves (countTokens of them): each run of four characters is one token, so equal
 * text is equal tokens, and two prompts that share a beginning share the tokens of it (which is
 * what prefix caching looks at).
 */
export function tokenize(text: string): string[] {
  const tokens = new Array<string>(countTokens(text));
  for (let i = 0; i < tokens.length; i++) tokens[i] = text.slice(i * 4, i * 4 + 4);
  return tokens;
}

const WORDS = (
  'the model simulated answer batch request token engine output result value data system process ' +
  'review example detail context summary point reason step method case note item record signal ' +
  'simple clear short long first next final general specific common useful careful quick steady'
).split(' ');

/** `count` tokens of text, one word each. */
export function generateText(seed: number, count: number): string {
  const random = prng(seed);
  const words: string[] = new Array<string>(count);
  for (let i = 0; i < count; i++) words[i] = WORDS[Math.floor(random() * WORDS.length)] ?? 'token';
  return words.join(' ');
}

/** A unit-length vector, reproducible from the seed. */
export function embeddingVector(seed: number, dim: number): number[] {
  const random = prng(seed);
  const v = new Array<number>(dim);
  let norm = 0;
  for (let i = 0; i < dim; i++) {
    const x = random() * 2 - 1;
    v[i] = x;
    norm += x * x;
  }
  const scale = norm > 0 ? 1 / Math.sqrt(norm) : 0;
  for (let i = 0; i < dim; i++) v[i] = Math.fround((v[i] ?? 0) * scale);
  return v;
}

/** Parses "200" or "16-256" into an inclusive range of natural output lengths. */
export function parseRange(spec: string): { min: number; max: number } {
  const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(spec);
  if (m === null) throw new Error(`invalid token range "${spec}": use N or MIN-MAX`);
  const min = Number(m[1]);
  const max = m[2] === undefined ? min : Number(m[2]);
  if (max < min) throw new Error(`invalid token range "${spec}": max below min`);
  return { min, max };
}
