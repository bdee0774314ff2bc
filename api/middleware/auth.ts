import { createMiddleware } from 'hono/factory';

import type { ApiDeps } from '../deps.js';
import { AuthenticationError } from '../errors.js';
import { projectForKey, type Project } from '../services/keys.js';

export type AuthEnv = { Variables: { project: Project } };

/** Bearer-key auth, as OpenAI does it: a missing or unknown key is a 401 in OpenAI's shape. */
export function requireApiKey(options: Pick<ApiDeps, 'db'>) {
  return createMiddleware<AuthEnv>(async (c, next) => {
    const header = c.req.header('authorization');
    const match = header === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (match?.[1] === undefined) {
      throw new AuthenticationError(
        "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
      );
    }
    const project = await projectForKey(options, match[1]);
    if (project === undefined) {
      const shown = match[1].length > 8 ? `${match[1].slice(0, 4)}…${match[1].slice(-4)}` : '****';
      throw new AuthenticationError(`Incorrect API key provided: ${shown}.`, { code: 'invalid_api_key' });
    }
    c.set('project', project);
    await next();
  });
}
