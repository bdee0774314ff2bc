import { createHash, randomBytes } from 'node:crypto';

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

function base62(bytes: Buffer, offset: number, length: number): string {
  let out = '';
  for (let i = 0; i < length; i++) out += ALPHABET.charAt((bytes[offset + i] ?? 0) % 62);
  return out;
}

// Ids are made by the thousand a second (one per output line): draw them from a pool of random
// bytes refilled in one call, not a system call each.
const POOL_SIZE = 24 * 1024;
let pool = randomBytes(POOL_SIZE);
let used = 0;

/** OpenAI-looking ids: file-…, batch_…, batch_req_… (random, 24 base62 characters). */
export function newId(prefix: 'file-' | 'batch_' | 'batch_req_' | 'key_' | 'proj_' | 'wh_' | 'whd_'): string {
  if (used + 24 > POOL_SIZE) {
    pool = randomBytes(POOL_SIZE);
    used = 0;
  }
  const id = prefix + base62(pool, used, 24);
  used += 24;
  return id;
}

/** The same id for the same seed: lets a retried step create "its" row again without duplicates. */
export function stableId(prefix: 'file-' | 'evt_' | 'whd_', seed: string): string {
  return prefix + base62(createHash('sha256').update(seed).digest(), 0, 24);
}

/** Ids we hand out are short and plain; anything else cannot name one of our objects. */
export function isWellFormedId(id: string): boolean {
  return /^[A-Za-z0-9_-]{1,128}$/.test(id);
}

export function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}
