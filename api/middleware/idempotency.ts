// Idempotency-Key (an extension; OpenAI's SDK sends none by default): a POST repeated with the same
// key gets the first answer again instead of creating a second batch or file. Keys are per project,
// bound to one route and (for JSON bodies) one set of parameters, and forgotten after a while.
import { createHash } from 'node:crypto';
import { createMiddleware } from 'hono/factory';

import { nowSeconds } from '../../lib/ids.js';
import type { Db } from '../../schema/db.js';
import { BadRequestError, ConflictError } from '../errors.js';
import { mediaType } from '../media-type.js';
import type { AuthEnv } from './auth.js';

export const IDEMPOTENCY_HEADER = 'idempotency-key';

export interface IdempotencyOptions {
  db: Db;
  ttlSeconds: number;
  /** A claim still unanswered after this long belongs to a request that died; a retry may take it. */
  leaseSeconds: number;
}

export function idempotent(options: IdempotencyOptions) {
  const { db } = options;
  const param = 'Idempotency-Key';
  return createMiddleware<AuthEnv>(async (c, next) => {
    const key = c.req.header(IDEMPOTENCY_HEADER);
    if (c.req.method !== 'POST' || key === undefined) {
      await next();
      return;
    }
    if (key.length === 0 || key.length > 255) {
      throw new BadRequestError('The Idempotency-Key header must be 1 to 255 characters.', {
        code: 'invalid_value',
        param,
      });
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
        throw new ConflictError('A request with this Idempotency-Key was just being processed; retry.', {
          code: 'idempotency_key_in_use',
          param,
        });
      }
      if (earlier.route !== route || earlier.request_hash !== requestHash) {
        throw new BadRequestError('This Idempotency-Key was already used for a different request; use a new key.', {
          code: 'idempotency_key_reused',
          param,
        });
      }
      if (earlier.status === null || earlier.response === null) {
        throw new ConflictError('A request with this Idempotency-Key is still being processed; retry shortly.', {
          code: 'idempotency_key_in_use',
          param,
        });
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
