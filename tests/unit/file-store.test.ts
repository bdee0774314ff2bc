// The local file store's uploads in parts (the S3 store's are checked against MinIO in s3-store.test.ts).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe } from 'vitest';

import { LocalFileStore } from '../../lib/file-store.js';
import { uploadContract } from '../support/upload-contract.js';

describe('the local file store: uploads in parts', () => {
  let root = '';
  beforeAll(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'file-store-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });
  uploadContract(() => new LocalFileStore(root));
});
