import { z } from 'zod';

import { fileDeletedSchema, fileObjectSchema, listSchema, uploadFieldsSchema } from '../../wire/openai.js';
import type { ApiDeps } from '../deps.js';
import { createFile, deleteFile, fileContent, getFile, listFiles, toFileObject } from '../services/files.js';
import { apiRoute, errorResponses, json, listPage, security, type App } from './common.js';

const fileIdParams = z.object({ file_id: z.string().min(1) });
const fileList = listSchema(fileObjectSchema, 'FileList');

const retrieveFile = apiRoute({
  method: 'get',
  path: '/v1/files/{file_id}',
  summary: 'Retrieve a file object',
  request: { params: fileIdParams },
  responses: { 200: json(fileObjectSchema, 'The file') },
});

const listFilesRoute = apiRoute({
  method: 'get',
  path: '/v1/files',
  summary: 'List files, newest first by default',
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
  responses: { 200: json(fileList, 'A page of files') },
});

const deleteFileRoute = apiRoute({
  method: 'delete',
  path: '/v1/files/{file_id}',
  summary: 'Delete a file and its bytes',
  request: { params: fileIdParams },
  responses: { 200: json(fileDeletedSchema, 'Deleted') },
});

export function registerFileRoutes(app: App, deps: ApiDeps): void {
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

  app.openapi(listFilesRoute, async (c) =>
    c.json(listPage(await listFiles(deps, c.get('project'), c.req.valid('query')), toFileObject), 200),
  );

  app.openapi(retrieveFile, async (c) =>
    c.json(toFileObject(await getFile(deps, c.get('project'), c.req.valid('param').file_id)), 200),
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
    const { body, headers } = await fileContent(deps, c.get('project'), c.req.param('file_id'));
    return c.body(body, 200, headers);
  });

  app.openapi(deleteFileRoute, async (c) => {
    const id = c.req.valid('param').file_id;
    await deleteFile(deps, c.get('project'), id);
    return c.json({ id, object: 'file' as const, deleted: true }, 200);
  });
}
