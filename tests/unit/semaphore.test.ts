import { describe, expect, it } from 'vitest';

import { AbortedError, sleep } from '../../lib/abortable.js';
import { Semaphore } from '../../lib/semaphore.js';

describe('Semaphore', () => {
  it('never hands out more permits than it has, and serves waiters in arrival order', async () => {
    const s = new Semaphore(2);
    const order: number[] = [];
    let inUse = 0;
    let peak = 0;
    await Promise.all(
      Array.from({ length: 8 }, async (_, i) => {
        const release = await s.acquire();
        order.push(i);
        inUse++;
        peak = Math.max(peak, inUse);
        await sleep(5);
        inUse--;
        release();
      }),
    );
    expect(peak).toBe(2);
    expect(order).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(s.inUse).toBe(0);
  });

  it('lets a waiter give up through its signal without losing a permit', async () => {
    const s = new Semaphore(1);
    const first = await s.acquire();
    const controller = new AbortController();
    const waiting = s.acquire(controller.signal);
    controller.abort();
    await expect(waiting).rejects.toBeInstanceOf(AbortedError);
    first();
    first(); // a second release is harmless
    const again = await s.acquire();
    expect(s.inUse).toBe(1);
    again();
    expect(s.inUse).toBe(0);
  });
});
