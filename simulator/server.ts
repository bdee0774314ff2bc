// An HTTP server that answers like vLLM's OpenAI-compatible server (vLLM 0.32): the same routes,
// response shapes, errors, headers, authentication, keep-alive and capacity behaviour, with
// deterministic outputs and injectable faults. Only /control/* is the simulator's own.
// tests/vllm/conformance.test.ts holds it to a real vLLM; simulator/README.md lists what differs.
// This file is the HTTP wiring: what is mounted, the middleware, and each route's handler; requests.ts
// checks a request, state.ts runs it, responses.ts writes the answer.
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { Hono, type Context, type MiddlewareHandler } from 'hono';

import { aborted, AbortedError, sleep } from '../lib/abortable.js';
import { capacityChangeSchema, capacityInForce, changeCapacity } from './capacity.js';
import { faultsSchema } from './faults.js';
import { VLLM_VERSION, type SimulatorOptions } from './options.js';
import { hexId, NotMounted, prepareRequest, type Prepared } from './requests.js';
import {
  brokenAnswer,
  errorResponse,
  errorTypeOf,
  JSON_TYPE,
  notFound,
  now,
  responseBody,
  streamCompletion,
  unauthorized,
  type SimulatorEnv,
} from './responses.js';
import { SimulatorState } from './state.js';
import { parseBody, RequestError, type Endpoint } from './validation.js';

/** vLLM's AuthenticationMiddleware: these prefixes need the key (any method but OPTIONS); the rest is open. */
const GUARDED_PREFIXES = ['/v1', '/v2', '/inference', '/cohere'];

function authMiddleware(keys: string[]): MiddlewareHandler<SimulatorEnv> {
  const digests = keys.map((k) => createHash('sha256').update(k).digest());
  return async (c, next) => {
    if (c.req.method === 'OPTIONS' || !GUARDED_PREFIXES.some((p) => c.req.path.startsWith(p))) return next();
    const header = c.req.header('authorization') ?? '';
    const space = header.indexOf(' ');
    const scheme = space < 0 ? header : header.slice(0, space);
    const token = space < 0 ? '' : header.slice(space + 1);
    const digest = createHash('sha256').update(token).digest();
    const ok = scheme.toLowerCase() === 'bearer' && digests.some((d) => timingSafeEqual(d, digest));
    if (!ok) return unauthorized(c);
    return next();
  };
}

export function createSimulatorApp(state: SimulatorState): Hono<SimulatorEnv> {
  const app = new Hono<SimulatorEnv>();
  const generative = state.modelsOf('generate').length > 0;
  const embedding = state.modelsOf('embed').length > 0;
  // The routes vLLM mounts for this server (only those the project uses; see simulator/README.md), and the simulator's own.
  const routes: Record<string, string[]> = {
    '/health': ['GET'],
    '/version': ['GET'],
    '/metrics': ['GET'],
    '/load': ['GET'],
    '/ping': ['GET', 'POST'],
    '/v1/models': ['GET'],
    ...(generative ? { '/v1/chat/completions': ['POST'], '/v1/completions': ['POST'], '/v1/responses': ['POST'] } : {}),
    ...(embedding ? { '/v1/embeddings': ['POST'] } : {}),
    ...(state.options.serverDevMode === true ? { '/reset_prefix_cache': ['POST'] } : {}),
    '/control/faults': ['GET', 'PUT'],
    '/control/capacity': ['GET', 'PUT'],
    '/control/stats': ['GET'],
    '/control/stats/reset': ['POST'],
    '/control/requests': ['GET'],
  };

  // Outermost: X-Request-Id only with --enable-request-id-headers; CORS's "vary: Origin" on all but the 401s.
  app.use(async (c, next) => {
    await next();
    if (c.res.status !== 401) c.res.headers.set('vary', 'Origin');
    // Node would announce its idle timeout ("keep-alive: timeout=5"), and clients such as undici would
    // then close idle connections in time; uvicorn announces nothing. A Connection header of our own
    // keeps Node from adding it, so clients meet the same 5-second close as with vLLM.
    const incoming = c.env.incoming;
    if (incoming.httpVersion === '1.1' && !/\bclose\b/i.test(c.req.header('connection') ?? ''))
      c.res.headers.set('connection', 'keep-alive');
    if (state.options.enableRequestIdHeaders === true)
      c.res.headers.set('x-request-id', c.req.header('x-request-id') ?? randomUUID().replaceAll('-', ''));
  });
  const keys = state.options.apiKey === undefined ? [] : [state.options.apiKey].flat();
  if (keys.length > 0) app.use(authMiddleware(keys));
  // Starlette's routing: an unknown path is 404 {"detail":"Not Found"}; a known one with another method (HEAD too) 405.
  app.use(async (c, next) => {
    const methods = routes[c.req.path];
    if (methods === undefined) return notFound(c);
    if (!methods.includes(c.req.method))
      return c.body('{"detail":"Method Not Allowed"}', 405, { ...JSON_TYPE, allow: methods.join(', ') });
    return next();
  });

  const inference =
    (kind: Endpoint) =>
    async (c: Context<SimulatorEnv>): Promise<Response> => {
      const raw = await c.req.text();
      state.recordArrival(raw);
      const signal = c.req.raw.signal;

      const fault = state.rollFault();
      if (fault.kind === 'drop') {
        state.countFault('drop');
        c.env.incoming.socket.destroy();
        return c.body(null);
      }
      if (fault.kind === 'hang') {
        state.countFault('hang');
        await aborted(signal);
        return c.body(null);
      }
      if (fault.extraLatencyMs > 0) state.countFault('spike');
      if (fault.kind === 'error') {
        state.countFault('error');
        try {
          await sleep(fault.extraLatencyMs, signal);
        } catch {
          return c.body(null);
        }
        if (fault.status === 401) return unauthorized(c);
        return errorResponse(
          c,
          new RequestError(fault.status, `simulated ${fault.status} error`, null, errorTypeOf(fault.status)),
          state.faults.retryAfterSeconds,
        );
      }

      let prepared: Prepared;
      try {
        prepared = prepareRequest(state, kind, parseBody(raw), c.req.header('x-request-id'));
      } catch (err) {
        state.countRejected();
        if (err instanceof NotMounted) return notFound(c);
        if (err instanceof RequestError) return errorResponse(c, err);
        throw err;
      }

      if (prepared.body.stream === true && (kind === 'chat' || kind === 'completions')) {
        return streamCompletion(c, state, kind, prepared, fault.extraLatencyMs, signal);
      }
      try {
        await state.execute(prepared, fault.extraLatencyMs, signal);
      } catch (err) {
        if (err instanceof AbortedError) {
          state.countAborted();
          return c.body(null);
        }
        throw err;
      }
      const answer = JSON.stringify(responseBody(prepared, state));
      if (fault.body !== undefined) return brokenAnswer(c, state, answer, fault.body, signal);
      return c.body(answer, 200, JSON_TYPE);
    };

  app.post('/v1/chat/completions', inference('chat'));
  app.post('/v1/completions', inference('completions'));
  app.post('/v1/embeddings', inference('embeddings'));
  app.post('/v1/responses', inference('responses'));

  app.get('/v1/models', (c) =>
    c.json({
      object: 'list',
      data: state.options.models.map((id) => ({
        id,
        object: 'model',
        created: now(),
        owned_by: 'vllm',
        root: id,
        parent: null,
        max_model_len: state.options.maxModelLen,
        permission: [
          {
            id: `modelperm-${hexId()}`,
            object: 'model_permission',
            created: now(),
            allow_create_engine: false,
            allow_sampling: true,
            allow_logprobs: true,
            allow_search_indices: false,
            allow_view: true,
            allow_fine_tuning: false,
            organization: '*',
            group: null,
            is_blocking: false,
          },
        ],
      })),
    }),
  );
  // An empty 200 (no content type), as vLLM's; 503 while the simulated engine is down.
  app.get('/health', (c) => c.body(null, state.faults.down ? 503 : 200));
  app.get('/version', (c) => c.json({ version: VLLM_VERSION }));
  app.get('/ping', (c) => c.body(null, state.faults.down ? 503 : 200));
  app.post('/ping', (c) => c.body(null, state.faults.down ? 503 : 200));
  // vLLM counts in-flight requests here only with --enable-server-load-tracking, which the simulator does not model.
  app.get('/load', (c) => c.json({ server_load: 0 }));
  app.get('/metrics', async (c) =>
    c.body(await state.registry.metrics(), 200, { 'content-type': state.registry.contentType }),
  );

  // vLLM's dev-mode route (VLLM_SERVER_DEV_MODE=1): success is false while any request holds KV blocks.
  if (state.options.serverDevMode === true)
    app.post('/reset_prefix_cache', (c) => c.json({ success: state.engine.scheduler.kv.pool.resetPrefixCache() }));

  // The simulator's own controls (not part of vLLM; open even with an API key).
  app.get('/control/faults', (c) => c.json(state.faults));
  app.put('/control/faults', async (c) => {
    const parsed = faultsSchema.safeParse(await c.req.json().catch(() => undefined));
    if (!parsed.success)
      return c.json({ error: { message: parsed.error.message, type: 'BadRequestError', param: null, code: 400 } }, 400);
    state.faults = parsed.data;
    return c.json(state.faults);
  });
  const capacity = { scheduler: state.engine.scheduler.config, timing: state.engine.timing };
  app.get('/control/capacity', (c) => c.json(capacityInForce(capacity)));
  app.put('/control/capacity', async (c) => {
    const parsed = capacityChangeSchema.safeParse(await c.req.json().catch(() => undefined));
    if (!parsed.success)
      return c.json({ error: { message: parsed.error.message, type: 'BadRequestError', param: null, code: 400 } }, 400);
    // The next step schedules under it (an engine with work is always stepping).
    return c.json(changeCapacity(capacity, parsed.data));
  });
  app.get('/control/stats', (c) => c.json(state.snapshot()));
  app.post('/control/stats/reset', (c) => {
    state.resetStats();
    return c.json(state.snapshot());
  });
  app.get('/control/requests', (c) => c.json(Object.fromEntries(state.requestCounts)));

  app.notFound((c) => notFound(c));
  app.onError((err, c) => errorResponse(c, new RequestError(500, err.message, null, 'InternalServerError')));
  return app;
}

export interface RunningSimulator {
  url: string;
  port: number;
  state: SimulatorState;
  close(): Promise<void>;
}

export async function startSimulator(
  options: SimulatorOptions,
  listen: { host: string; port: number },
): Promise<RunningSimulator> {
  const state = new SimulatorState(options);
  const app = createSimulatorApp(state);
  const server = await new Promise<ReturnType<typeof serve>>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, hostname: listen.host, port: listen.port }, () => {
      resolve(s);
    });
    s.once('error', reject);
  });
  if ('requestTimeout' in server) {
    // Never let Node's timeouts cut a long generation; but close an idle keep-alive connection after
    // 5 s, as vLLM's uvicorn does (a client must not reuse a connection idle for longer).
    server.requestTimeout = 0;
    server.headersTimeout = 0;
    server.keepAliveTimeout = options.keepAliveTimeoutMs ?? 5000;
  }
  const address = server.address() as AddressInfo;
  const host = listen.host.includes(':') ? `[${listen.host}]` : listen.host;
  return {
    url: `http://${host}:${address.port}`,
    port: address.port,
    state,
    close: () =>
      new Promise<void>((resolve) => {
        if ('closeAllConnections' in server) server.closeAllConnections();
        server.close(() => {
          state.close();
          resolve();
        });
      }),
  };
}
