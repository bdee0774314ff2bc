// Waiting that stops the moment an AbortSignal fires: the building block of cancellable work.

export class AbortedError extends Error {
  constructor(message = 'aborted') {
    super(message);
    this.name = 'AbortedError';
  }
}

/** Resolves after ms, or rejects with AbortedError as soon as the signal fires. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted === true) {
      reject(new AbortedError());
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(new AbortedError());
    };
    const timer = setTimeout(
      () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      },
      Math.max(0, ms),
    );
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Resolves when the signal fires (at once if it already has). */
export function aborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else
      signal.addEventListener(
        'abort',
        () => {
          resolve();
        },
        { once: true },
      );
  });
}

/** The promise's outcome, or a rejection saying it took too long; the promise itself goes on regardless. */
export async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      reject(new Error(`no answer within ${ms} ms`));
    }, ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

export interface KeepTryingOptions {
  log?: { warn(obj: object, msg: string): void };
  signal?: AbortSignal;
  /** Errors worth waiting out; anything else is thrown at once. Default: every error. */
  isTransient?: (err: unknown) => boolean;
  retryMs?: number;
  maxRetryMs?: number;
}

/**
 * Runs `attempt` until it succeeds, waiting out a dependency that is not there yet (a database or
 * server still starting, or restarting) and saying so now and then, rather than ending the process.
 * Stops with the error when it is not transient, or with AbortedError when the signal fires.
 */
export async function keepTrying<T>(
  what: string,
  attempt: () => Promise<T>,
  options: KeepTryingOptions = {},
): Promise<T> {
  for (let n = 1; ; n++) {
    try {
      return await attempt();
    } catch (err) {
      if (options.isTransient?.(err) === false || options.signal?.aborted === true) throw err;
      if (n === 1 || n % 10 === 0)
        options.log?.warn(
          { err: err instanceof Error ? err.message : String(err), attempt: n },
          `${what} is not reachable yet; waiting for it`,
        );
      await sleep(Math.min(options.maxRetryMs ?? 5000, (options.retryMs ?? 500) * n), options.signal);
    }
  }
}
