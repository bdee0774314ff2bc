// A counting semaphore whose permits are shared fairly between keys, and whose limit can move. The
// GPU worker bounds its in-flight engine requests with it: the key is the chunk's project (Temporal's
// fairness key), so a small batch of one project gets its share of the engine at once instead of
// queueing behind every request of another project's large batch: a key holding less than its share
// takes permits beyond the limit (up to twice it in all), and the keys above their share get none
// until the total is back under it (the limit is a target the keys pay back to, not a wall a newcomer waits at). Within a key, waiters of a lower
// rank go first (the chunk that started first sends all its lines before the next: chunks end in
// the order they began, as the files written ahead want). With one key and one rank it is a plain
// first-come, first-served semaphore.

import { AbortedError } from './abortable.js';

interface Waiter {
  key: string;
  priority: number;
  rank: readonly number[];
  /** Arrival order: among equal ranks, and among keys with equal shares, the earliest waiter goes first. */
  seq: number;
  resolve: () => void;
  reject: (err: Error) => void;
}

export type Release = () => void;

/**
 * Whose turn a waiter is: the lowest priority first (Temporal's priority key: lower runs sooner),
 * then the key holding least for its weight, then the lowest rank within the key.
 */
export interface Claim {
  key?: string;
  priority?: number;
  /** Compared element by element (a missing element counts as lowest). */
  rank?: readonly number[];
}

/** Within a key: priority, then rank (arrival breaks ties). */
function before(a: Waiter, b: Waiter): boolean {
  if (a.priority !== b.priority) return a.priority < b.priority;
  for (let i = 0; i < Math.max(a.rank.length, b.rank.length); i++) {
    const x = a.rank[i] ?? Number.NEGATIVE_INFINITY;
    const y = b.rank[i] ?? Number.NEGATIVE_INFINITY;
    if (x !== y) return x < y;
  }
  return false;
}

export class Semaphore {
  private held = 0;
  private limit: number;
  private seq = 0;
  private waitingCount = 0;
  /** Each key's waiters by rank, then arrival; a key is here only while it has some. */
  private readonly queues = new Map<string, Waiter[]>();
  /** Permits each key holds; a key is here only while it holds some. */
  private readonly heldBy = new Map<string, number>();
  /** Keys' weights (a share is proportional to its weight); 1 for a key not set. */
  private readonly weights = new Map<string, number>();

  constructor(permits: number) {
    this.limit = checkedPermits(permits);
  }

  /** The weight of `key` from now on (the latest chunk of a project says what its project weighs). */
  setWeight(key: string, weight: number): void {
    if (weight === 1) this.weights.delete(key);
    else this.weights.set(key, Math.max(weight, 1e-3));
  }

  get permits(): number {
    return this.limit;
  }

  get inUse(): number {
    return this.held;
  }

  get queued(): number {
    return this.waitingCount;
  }

  /** Permits `key` holds now. */
  heldFor(key: string): number {
    return this.heldBy.get(key) ?? 0;
  }

  /** Permits each key holds now (keys holding none are absent). */
  holders(): ReadonlyMap<string, number> {
    return this.heldBy;
  }

  /**
   * Moves the limit. Raising it hands permits to waiters at once; lowering it takes permits back as
   * their holders release them (nothing held is taken away).
   */
  setPermits(permits: number): void {
    this.limit = checkedPermits(permits);
    this.dispatch();
  }

  /** Resolves with the function that gives the permit back (calling it twice is harmless). */
  async acquire(signal?: AbortSignal, claim: Claim = {}): Promise<Release> {
    if (signal?.aborted === true) throw new AbortedError();
    const key = claim.key ?? '';
    if (this.held < this.limit && this.waitingCount === 0) {
      this.take(key);
    } else {
      await new Promise<void>((resolve, reject) => {
        const waiter: Waiter = {
          key,
          priority: claim.priority ?? 0,
          rank: claim.rank ?? [],
          seq: this.seq++,
          resolve,
          reject,
        };
        const queue = this.queues.get(key);
        if (queue === undefined) this.queues.set(key, [waiter]);
        else {
          // After every waiter that goes before it or ties (few waiters: one per chunk sending).
          let at = queue.length;
          while (at > 0 && before(waiter, queue[at - 1] ?? waiter)) at--;
          queue.splice(at, 0, waiter);
        }
        this.waitingCount++;
        // A key below its share need not wait for permits to come back.
        this.dispatch();
        signal?.addEventListener(
          'abort',
          () => {
            if (!this.remove(waiter)) return;
            reject(new AbortedError());
            // It may have been the head that kept a less urgent key below its share waiting.
            this.dispatch();
          },
          { once: true },
        );
      });
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.give(key);
      this.dispatch();
    };
  }

  private take(key: string): void {
    this.held++;
    this.heldBy.set(key, (this.heldBy.get(key) ?? 0) + 1);
  }

  private give(key: string): void {
    this.held--;
    const left = (this.heldBy.get(key) ?? 1) - 1;
    if (left > 0) this.heldBy.set(key, left);
    else this.heldBy.delete(key);
  }

  /** The permits `key` is owed: the limit split between the keys holding or waiting, by weight. */
  private shareOf(key: string): number {
    let total = 0;
    for (const k of this.heldBy.keys()) total += this.weights.get(k) ?? 1;
    for (const k of this.queues.keys()) if (!this.heldBy.has(k)) total += this.weights.get(k) ?? 1;
    return (this.limit * (this.weights.get(key) ?? 1)) / total;
  }

  private remove(waiter: Waiter): boolean {
    const queue = this.queues.get(waiter.key);
    const i = queue?.indexOf(waiter) ?? -1;
    if (queue === undefined || i < 0) return false;
    queue.splice(i, 1);
    if (queue.length === 0) this.queues.delete(waiter.key);
    this.waitingCount--;
    return true;
  }

  /**
   * Permits go to the most urgent priority waiting, then to the key that holds the least for its
   * weight (max-min fairness of what is in flight, not of the order of grants). Under the limit,
   * that waiter is served; at or over it, only if its key holds less than its share: a key that
   * arrives gets its share at once, and the others, above theirs, are paid back as they release.
   */
  private dispatch(): void {
    while (this.waitingCount > 0) {
      let best: Waiter | undefined;
      let bestShare = Infinity;
      for (const [key, queue] of this.queues) {
        const head = queue[0];
        if (head === undefined) continue;
        const share = this.heldFor(key) / (this.weights.get(key) ?? 1);
        const better =
          best === undefined ||
          head.priority < best.priority ||
          (head.priority === best.priority && (share < bestShare || (share === bestShare && head.seq < best.seq)));
        if (better) {
          best = head;
          bestShare = share;
        }
      }
      const next = best;
      if (next === undefined) return;
      // Beyond the limit only for a key below its share, and never past twice the limit (the engine
      // client's connections; keys arriving one after another could otherwise add up beyond it).
      if (this.held >= this.limit && (this.held >= 2 * this.limit || this.heldFor(next.key) >= this.shareOf(next.key)))
        return;
      this.remove(next);
      this.take(next.key);
      next.resolve();
    }
  }
}

function checkedPermits(permits: number): number {
  if (!Number.isInteger(permits) || permits < 1)
    throw new Error(`a semaphore needs at least one permit, got ${permits}`);
  return permits;
}
