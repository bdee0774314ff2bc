import 'vitest';

// What the global setup shares with every test file (through vitest's provide/inject).
export interface SharedServices {
  temporalAddress: string;
  /** Temporal is a server the run did not start (TEMPORAL_ADDRESS: a cluster), not the run's own dev server. */
  temporalExternal: boolean;
  temporalCliPath: string;
  /** The Temporal Web UI of that server (the dev server's own; TEMPORAL_UI_URL for a server the run did not start). */
  temporalUiUrl: string | undefined;
  /** Postgres server URL without a database; each test file makes its own database. */
  postgresServerUrl: string;
  /** A simulator with fast settings, shared by files that need no faults of their own. */
  simulatorUrl: string;
  simulatorModel: string;
  workflowBundlePath: string;
  tmpDir: string;
  /** Installed from PyPI once (cached in the tools folder), with a migrated data folder to copy. */
  labelStudio: { binary: string; template: string };
  /** A real S3-compatible server (MinIO); each stack that wants one makes its own bucket. */
  s3: { endpoint: string; accessKeyId: string; secretAccessKey: string };
}

export const MINIO_CREDENTIALS = { accessKeyId: 'gpu-batch-test', secretAccessKey: 'gpu-batch-test-secret' };

declare module 'vitest' {
  export interface ProvidedContext {
    services: SharedServices;
  }
}
