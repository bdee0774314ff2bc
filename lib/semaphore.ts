// A counting semaphore that hands out permits in arrival order and lets a waiter give up when its
// AbortSignal fires. The GPU worker bounds its in-flight engine requests with it, and the vLLM
// simulator models the engine's concurrent sequences with the same thing.

import { AbortedError } from './abortable.js';

interface Waiter {
  resolve: () => void;
  reject: (err: Error) => void;
}

export type Release = () => void;

export class Semaphore {
  private held = 0;
  private readonly waiting: Waiter[] = [];

  constructor(readonly permits: number) {
    if (!Number.isInteger(permits) || permits < 1)
      throw new Error(`a semaphore needs at least one permit, got ${permits}`);
  }

  get inUse(): number {
    return this.held;
  }

  get queued(): number {
    return this.waiting.length;
  }

  /** Resolves with the function that gives the permit back (calling it twice is harmless). */
  async acquire(signal?: AbortSignal): Promise<Release> {
    if (signal?.aborted === true) throw new AbortedError();
    if (this.held < this.permits && this.waiting.length === 0) {
      this.held++;
    } else {
      await new Promise<void>((resolve, reject) => {
        const waiter: Waiter = { resolve, reject };
        this.waiting.push(waiter);
        signal?.addEventListener(
          'abort',
          () => {
            const i = this.waiting.indexOf(waiter);
            if (i >= 0) {
              this.waiting.splice(i, 1);
              reject(new AbortedError());
            }
          },
          { once: true },
        );
      });
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      // The permit passes straight to the next waiter, which keeps arrival order.
      if (next !== undefined) next.resolve();
      else this.held--;
    };
  }
}
