import { Readable } from 'node:stream';
import { createRoute } from '@hono/zod-openapi';
import { z } from 'zod';

import { fileObjectSchema, listSchema, uploadFieldsSchema } from '../../wire/openai.js';
import {
  createFile,
  deleteFile,
  getFile,
  listFiles,
  openFileContent,
  toFileObject,
  type UploadDeps,
} from '../services/files.js';
import { errorResponses, json, security, type App } from './common.js';

const fileIdParams = z.object({ file_id: z.string().min(1) });
const fileList = listSchema(fileObjectSchema, 'FileList');

const retrieveFile = createRoute({
  method: 'get',
  path: '/v1/files/{file_id}',
  summary: 'Retrieve a file object',
  security,
  request: { params: fileIdParams },
  responses: { 200: json(fileObjectSchema, 'The file'), ...errorResponses },
});

const listFilesRoute = createRoute({
  method: 'get',
  path: '/v1/files',
  summary: 'List files, newest first by default',
  security,
  request: {
    query: z.object({
      after: z.string().optional(),
      limit: z.coerce.number().int().min(1).max(10_000).default(10_000),
      order: z.enum(['asc', 'desc']).default('desc'),
      purpose: z
        .string()
        .regex(/^[a-z_-]{1,64}$/, 'a purpose such as batch or batch_output')
        .optional(),
    }),
  },
  responses: { 200: json(fileList, 'A page of files'), ...errorResponses },
});

const deleteFileRoute = createRoute({
  method: 'delete',
  path: '/v1/files/{file_id}',
  summary: 'Delete a file and its bytes',
  security,
  request: { params: fileIdParams },
  responses: {
    200: json(
      z.object({ id: z.string(), object: z.literal('file'), deleted: z.boolean() }).meta({ id: 'FileDeleted' }),
      'Deleted',
    ),
    ...errorResponses,
  },
});

/** RFC 6266: an ASCII fallback plus the exact UTF-8 name, so any file name is a valid header. */
function contentDisposition(filename: string): string {
  const ascii = filename.replace(/[^\x20-\x7e]/g, '_').replace(/["\\]/g, '_');
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(filename)}`;
}

export function registerFileRoutes(app: App, deps: UploadDeps): void {
  // Uploads are streamed with busboy rather than parsed by the validator, so this route is documented by hand.
  app.openAPIRegistry.registerPath({
    method: 'post',
    path: '/v1/files',
    summary: "Upload a batch input file (multipart: 'file' and 'purpose'='batch')",
    security,
    request: {
      body: {
        content: {
          'multipart/form-data': {
            schema: z
              .object({ file: z.string().meta({ format: 'binary', description: 'A .jsonl file of at most 200 MB' }) })
              .and(uploadFieldsSchema),
          },
        },
      },
    },
    responses: {
      200: json(fileObjectSchema, 'The stored file'),
      ...errorResponses,
      413: errorResponses[400],
      415: errorResponses[400],
    },
  });
  app.post('/v1/files', async (c) => c.json(toFileObject(await createFile(deps, c.get('project'), c.req.raw)), 200));

  app.openapi(listFilesRoute, async (c) => {
    const q = c.req.valid('query');
    const { rows, hasMore } = await listFiles(deps.db, c.get('project'), q);
    const data = rows.map(toFileObject);
    return c.json(
      {
        object: 'list' as const,
        data,
        first_id: data[0]?.id ?? null,
        last_id: data.at(-1)?.id ?? null,
        has_more: hasMore,
      },
      200,
    );
  });

  app.openapi(retrieveFile, async (c) =>
    c.json(toFileObject(await getFile(deps.db, c.get('project'), c.req.valid('param').file_id)), 200),
  );

  app.openAPIRegistry.registerPath({
    method: 'get',
    path: '/v1/files/{file_id}/content',
    summary: 'Download the bytes of a file',
    security,
    request: { params: fileIdParams },
    responses: {
      200: {
        description: 'The file bytes',
        content: { 'application/octet-stream': { schema: z.string().meta({ format: 'binary' }) } },
      },
      ...errorResponses,
    },
  });
  app.get('/v1/files/:file_id/content', async (c) => {
    const { file, bytes, body: content } = await openFileContent(deps, c.get('project'), c.req.param('file_id'));
    // A store that fails mid-body cuts the download short (the client sees a short body); it is logged, never a crash.
    content.on('error', () => undefined);
    const body = Readable.toWeb(content) as ReadableStream<Uint8Array>;
    return c.body(body, 200, {
      'content-type': 'application/octet-stream',
      'content-length': String(bytes),
      'content-disposition': contentDisposition(file.filename),
    });
  });

  app.openapi(deleteFileRoute, async (c) => {
    const id = c.req.valid('param').file_id;
    await deleteFile(deps, c.get('project'), id);
    return c.json({ id, object: 'file' as const, deleted: true }, 200);
  });
}
