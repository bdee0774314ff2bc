// A real S3-compatible server (MinIO, built from the Go module proxy like the Temporal CLI) for the
// tests of the S3 file store and for trying FILE_STORE=s3 on one machine: `npm run minio`.
import type { ChildProcess } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';

import { loadConfig, type Config } from '../lib/config.js';
import { isEntryPoint, onShutdown, runEntryPoint } from '../lib/entry.js';
import { createLogger, type Logger } from '../lib/logger.js';
import { resolveGoTool, type GoTool, type GoToolOptions, type ResolvedTool } from './go-tool.js';
import { startHttpService } from './service-process.js';

const MODULE = 'github.com/minio/minio';

const MINIO: GoTool = {
  binary: 'minio',
  module: MODULE,
  notFound: (detail) =>
    new Error(
      `No MinIO server could be found or built (${detail}).\n` +
        'Put `minio` on PATH, set MINIO_PATH to one, or install Go (https://go.dev/dl) so it can be built ' +
        `with \`go install ${MODULE}@<version>\`. Only the S3 store's tests and \`npm run minio\` need it.`,
    ),
};

export function minioOptions(config: Config, log: Logger): GoToolOptions {
  return {
    configuredPath: config.minio.path,
    configuredName: 'MINIO_PATH',
    toolsDir: config.paths.toolsDir,
    version: config.minio.version,
    log,
  };
}

export function resolveMinio(options: GoToolOptions): Promise<ResolvedTool> {
  return resolveGoTool(MINIO, options);
}

export interface MinioSettings {
  binary: string;
  dataDir: string;
  /** Address to listen on (default loopback). */
  host?: string;
  port: number;
  accessKeyId: string;
  secretAccessKey: string;
}

export interface RunningMinio {
  endpoint: string;
  process: ChildProcess;
  /** A client for this server, path-style as MinIO wants. */
  client(): S3Client;
  stop(): Promise<void>;
}

export async function startMinio(s: MinioSettings, log: Logger, timeoutMs = 60_000): Promise<RunningMinio> {
  await mkdir(s.dataDir, { recursive: true });
  const host = s.host ?? '127.0.0.1';
  const endpoint = `http://${host}:${s.port}`;
  const service = await startHttpService({
    name: `MinIO at ${endpoint}`,
    command: s.binary,
    args: ['server', s.dataDir, '--address', `${host}:${s.port}`, '--quiet'],
    env: {
      ...process.env,
      MINIO_ROOT_USER: s.accessKeyId,
      MINIO_ROOT_PASSWORD: s.secretAccessKey,
      MINIO_BROWSER: 'off',
      MINIO_UPDATE: 'off',
    },
    healthUrl: `${endpoint}/minio/health/ready`,
    timeoutMs,
    stopGraceMs: 5000,
  });
  log.info({ endpoint }, 'MinIO ready');
  return {
    endpoint,
    ...service,
    client: () =>
      new S3Client({
        endpoint,
        region: 'us-east-1',
        forcePathStyle: true,
        credentials: { accessKeyId: s.accessKeyId, secretAccessKey: s.secretAccessKey },
      }),
  };
}

/** Creates the bucket unless it is there already. */
export async function ensureBucket(client: S3Client, bucket: string): Promise<void> {
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
  } catch (err) {
    const name = (err as Error).name;
    if (name !== 'BucketAlreadyOwnedByYou' && name !== 'BucketAlreadyExists') throw err;
  }
}

// `npm run minio:install` builds it ahead of time (CI does); `npm run minio` serves the S3 settings'
// bucket from .data/minio, for FILE_STORE=s3 on one machine.
if (isEntryPoint(import.meta.url)) {
  runEntryPoint(async () => {
    const config = loadConfig();
    const log = createLogger('minio', config.log);
    const binary = await resolveMinio(minioOptions(config, log));
    if (process.argv[2] === 'install') {
      log.info({ path: binary.path, source: binary.source }, 'MinIO ready to run');
      return;
    }
    const { s3 } = config.files;
    const minio = await startMinio(
      {
        binary: binary.path,
        dataDir: path.join(config.paths.dataDir, 'minio'),
        port: config.minio.port,
        accessKeyId: s3.accessKeyId ?? 'minioadmin',
        secretAccessKey: s3.secretAccessKey ?? 'minioadmin',
      },
      log,
    );
    onShutdown(() => minio.stop(), log);
    const bucket = s3.bucket ?? 'gpu-batch';
    await ensureBucket(minio.client(), bucket);
    log.info(
      { endpoint: minio.endpoint, bucket },
      `serving; run the stack with FILE_STORE=s3 S3_ENDPOINT=${minio.endpoint} S3_BUCKET=${bucket} S3_FORCE_PATH_STYLE=true` +
        (s3.accessKeyId === undefined ? ' S3_ACCESS_KEY_ID=minioadmin S3_SECRET_ACCESS_KEY=minioadmin' : ''),
    );
    await new Promise<void>((resolve) =>
      minio.process.once('exit', () => {
        resolve();
      }),
    );
  });
}
