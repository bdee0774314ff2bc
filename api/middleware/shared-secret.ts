// A shared secret in a header, for callers that cannot sign their requests (Label Studio's
// webhooks). Without a configured secret the route is off and answers as an unknown URL would.
import { timingSafeEqual } from 'node:crypto';
import { createMiddleware } from 'hono/factory';

import { AuthenticationError, NotFoundError } from '../errors.js';

export interface SharedSecretOptions {
  /** The request header that carries the secret. */
  header: string;
  /** Unset turns the route off. */
  secret: string | undefined;
  /** What the route is and the setting that holds its secret, named in the answer when it is unset. */
  what: string;
  setting: string;
}

function sameSecret(given: string | undefined, expected: string): boolean {
  if (given === undefined) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

export function requireSharedSecret(options: SharedSecretOptions) {
  return createMiddleware(async (c, next) => {
    if (options.secret === undefined)
      throw new NotFoundError(`${options.what} is off (${options.setting} is unset).`, { code: 'unknown_url' });
    if (!sameSecret(c.req.header(options.header), options.secret))
      throw new AuthenticationError(`Wrong or missing ${options.header} header.`, { code: 'invalid_webhook_secret' });
    await next();
  });
}
