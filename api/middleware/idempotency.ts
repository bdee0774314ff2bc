// Idempotency-Key (an extension; OpenAI's SDK sends none by default): a POST repeated with the same
// key gets the first answer again instead of creating a second batch or file. Keys are per project,
// bound to one route and (for JSON bodies) one set of parameters, and forgotten after a while.
import { createHash } from 'node:crypto';
import { createMiddleware } from 'hono/factory';

import { nowSeconds } from '../../lib/ids.js';
import type { Db } from '../../schema/db.js';
import { ApiError } from '../errors.js';
import { mediaType } from '../media-type.js';
import type { AuthEnv } from './auth.js';

export const IDEMPOTENCY_HEADER = 'idempotency-key';

export interface IdempotencyOptions {
  ttlSeconds: number;
  /** A claim still unanswered after this long belongs to a request that died; a retry may take it. */
  leaseSeconds: number;
}

export function idempotent(db: Db, options: IdempotencyOptions) {
  return createMiddleware<AuthEnv>(async (c, next) => {
    const key = c.req.header(IDEMPOTENCY_HEADER);
    if (c.req.method !== 'POST' || key === undefined) {
      await next();
      return;
    }
    if (key.length === 0 || key.length > 255) {
      throw new ApiError(
        400,
        'The Idempotency-Key header must be 1 to 255 characters.',
        'invalid_value',
        'Idempotency-Key',
      );
    }
    const project = c.get('project');
    const route = `POST ${c.req.path}`;
    // Only a JSON body is hashed (read whole: the body limit bounds it); an upload's stream is not read here.
    const isJson = mediaType(c.req.raw) === 'application/json';
    // Hono keeps the body it read, so the route's own validator still sees it.
    const requestHash = isJson
      ? createHash('sha256')
          .update(await c.req.text())
          .digest('hex')
      : null;
    const now = nowSeconds();

    await db
      .deleteFrom('idempotency_keys')
      .where('project_id', '=', project.id)
      .where('key', '=', key)
      .where((eb) =>
        eb.or([
          eb('created_at', '<', now - options.ttlSeconds),
          eb.and([eb('status', 'is', null), eb('created_at', '<', now - options.leaseSeconds)]),
        ]),
      )
      .execute();
    const claimed = await db
      .insertInto('idempotency_keys')
      .values({
        project_id: project.id,
        key,
        route,
        request_hash: requestHash,
        status: null,
        response: null,
        created_at: now,
      })
      .onConflict((oc) => oc.columns(['project_id', 'key']).doNothing())
      .returning('key')
      .executeTakeFirst();

    if (claimed === undefined) {
      const earlier = await db
        .selectFrom('idempotency_keys')
        .selectAll()
        .where('project_id', '=', project.id)
        .where('key', '=', key)
        .executeTakeFirst();
      // Gone between our insert and this read: the first request failed and let go; try again.
      if (earlier === undefined) {
        throw new ApiError(
          409,
          'A request with this Idempotency-Key was just being processed; retry.',
          'idempotency_key_in_use',
          'Idempotency-Key',
        );
      }
      if (earlier.route !== route || earlier.request_hash !== requestHash) {
        throw new ApiError(
          400,
          'This Idempotency-Key was already used for a different request; use a new key.',
          'idempotency_key_reused',
          'Idempotency-Key',
        );
      }
      if (earlier.status === null || earlier.response === null) {
        throw new ApiError(
          409,
          'A request with this Idempotency-Key is still being processed; retry shortly.',
          'idempotency_key_in_use',
          'Idempotency-Key',
        );
      }
      c.res = new Response(earlier.response, {
        status: earlier.status,
        headers: { 'content-type': 'application/json', 'idempotent-replayed': 'true' },
      });
      return;
    }

    const forget = (): Promise<unknown> =>
      db.deleteFrom('idempotency_keys').where('project_id', '=', project.id).where('key', '=', key).execute();
    try {
      await next();
    } catch (err) {
      await forget();
      throw err;
    }
    // A server-side failure may succeed on retry, so it is not remembered; anything else is.
    if (c.res.status >= 500) {
      await forget();
      return;
    }
    await db
      .updateTable('idempotency_keys')
      .set({ status: c.res.status, response: await c.res.clone().text() })
      .where('project_id', '=', project.id)
      .where('key', '=', key)
      .execute();
  });
}

/** Keys older than the TTL, gone; returns how many. */
export async function sweepExpiredKeys(db: Db, ttlSeconds: number): Promise<number> {
  const swept = await db
    .deleteFrom('idempotency_keys')
    .where('created_at', '<', nowSeconds() - ttlSeconds)
    .executeTakeFirst();
  return Number(swept.numDeletedRows);
}
