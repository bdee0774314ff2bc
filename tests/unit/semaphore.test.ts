import { describe, expect, it } from 'vitest';

import { AbortedError, sleep } from '../../lib/abortable.js';
import { Semaphore } from '../../lib/semaphore.js';

/** Lets every promise already resolved run its callbacks. */
const settled = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

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

  it('gives a key that arrives late its share at once, beyond the limit, and the others pay it back', async () => {
    const s = new Semaphore(4);
    const big = await Promise.all(Array.from({ length: 4 }, () => s.acquire(undefined, { key: 'big' })));
    // The big project queued more before the small one came.
    const queuedBig = Array.from({ length: 6 }, () => s.acquire(undefined, { key: 'big' }));
    let bigGranted = 0;
    for (const p of queuedBig) void p.then(() => bigGranted++);
    const small = await Promise.all([0, 1].map(() => s.acquire(undefined, { key: 'small' })));
    // Half of the four for the newcomer, at once: six in flight.
    expect(s.heldFor('small')).toBe(2);
    expect(s.inUse).toBe(6);
    // A third small request is beyond its share: it waits, as the big project's do.
    let third = false;
    const smallThird = s.acquire(undefined, { key: 'small' }).then((release) => {
      third = true;
      return release;
    });
    await settled();
    expect(third).toBe(false);
    // The big project's first two releases pay back the excess: nobody is served until under the limit.
    big[0]?.();
    big[1]?.();
    await settled();
    expect(s.inUse).toBe(4);
    expect(bigGranted).toBe(0);
    expect(third).toBe(false);
    // Under the limit, max-min: the big project (2 held) and the small one (2) alternate, arrival first.
    big[2]?.();
    await settled();
    expect(bigGranted).toBe(1);
    for (const release of [...small, big[3]]) release?.();
    (await smallThird)();
    await Promise.all(
      queuedBig.map((p) =>
        p.then((release) => {
          release();
        }),
      ),
    );
    expect(s.inUse).toBe(0);
  });

  it('lends beyond the limit at most as much again, however many keys arrive', async () => {
    const s = new Semaphore(4);
    for (let i = 0; i < 4; i++) await s.acquire(undefined, { key: 'first' });
    const arrivals = ['b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'].flatMap((key) =>
      [0, 1].map(() => s.acquire(undefined, { key })),
    );
    await settled();
    expect(s.inUse).toBe(8);
    expect(s.queued).toBe(arrivals.length - 4);
  });

  it('serves the next waiter when the head that held it back gives up', async () => {
    const s = new Semaphore(2);
    const held = await Promise.all([s.acquire(undefined, { key: 'a' }), s.acquire(undefined, { key: 'a' })]);
    const giveUp = new AbortController();
    // An urgent waiter of the key above its share, then a key below its share behind it.
    const urgent = s.acquire(giveUp.signal, { key: 'a', priority: 1 });
    let served = false;
    const b = s.acquire(undefined, { key: 'b', priority: 3 }).then((release) => {
      served = true;
      return release;
    });
    await settled();
    expect(served).toBe(false);
    giveUp.abort();
    await expect(urgent).rejects.toThrow();
    await settled();
    expect(served).toBe(true);
    (await b)();
    for (const release of held) release();
  });

  it('shares in proportion to weights', async () => {
    const s = new Semaphore(6);
    s.setWeight('heavy', 2);
    const holder = await Promise.all(Array.from({ length: 6 }, () => s.acquire(undefined, { key: 'other' })));
    const heavy = Array.from({ length: 6 }, () => s.acquire(undefined, { key: 'heavy' }));
    const light = Array.from({ length: 6 }, () => s.acquire(undefined, { key: 'light' }));
    for (const release of holder) release();
    await Promise.resolve();
    // Six permits freed: two thirds to the key of weight 2.
    expect(s.heldFor('heavy')).toBe(4);
    expect(s.heldFor('light')).toBe(2);
    await Promise.all(
      [...heavy, ...light].map((p) =>
        p.then((release) => {
          release();
        }),
      ),
    );
    expect(s.inUse).toBe(0);
  });

  it('moves its limit: more permits wake waiters, fewer are taken back as holders release', async () => {
    const s = new Semaphore(2);
    const held = await Promise.all([s.acquire(), s.acquire()]);
    let third = false;
    const waiting = s.acquire().then((release) => {
      third = true;
      return release;
    });
    s.setPermits(3);
    const release3 = await waiting;
    expect(third).toBe(true);
    s.setPermits(1);
    expect(s.inUse).toBe(3);
    let fourth = false;
    const next = s.acquire().then((release) => {
      fourth = true;
      return release;
    });
    held[0]();
    held[1]();
    await Promise.resolve();
    expect(fourth).toBe(false);
    release3();
    (await next)();
    expect(fourth).toBe(true);
    expect(s.inUse).toBe(0);
  });

  it('serves lower ranks of a key first, arrival order among equal ranks', async () => {
    const s = new Semaphore(1);
    const first = await s.acquire();
    const order: string[] = [];
    const wait = (name: string, rank: number[]): Promise<void> =>
      s.acquire(undefined, { rank }).then((release) => {
        order.push(name);
        release();
      });
    const all = Promise.all([
      wait('late chunk', [1, 2]),
      wait('early chunk', [1, 1]),
      wait('late chunk again', [1, 2]),
      wait('early again', [1, 1]),
      wait('a lower first element', [0, 5]),
    ]);
    first();
    await all;
    expect(order).toEqual(['a lower first element', 'early chunk', 'early again', 'late chunk', 'late chunk again']);
  });

  it('serves a more urgent priority first, whatever the shares', async () => {
    const s = new Semaphore(2);
    const held = await Promise.all([s.acquire(undefined, { key: 'a' }), s.acquire(undefined, { key: 'a' })]);
    const order: string[] = [];
    const wait = (key: string, priority: number): Promise<void> =>
      s.acquire(undefined, { key, priority }).then((release) => {
        order.push(`${key}${priority}`);
        release();
      });
    // b holds nothing, so shares alone would serve it first, even beyond the limit; a's priority-1
    // waiter goes before it.
    const all = Promise.all([wait('a', 1), wait('b', 3)]);
    held[0]();
    await all;
    held[1]();
    expect(order).toEqual(['a1', 'b3']);
  });
});
