// The database as a TypeScript type: Kysely checks every query against it.
// Times are Unix seconds (the unit of OpenAI's wire objects), stored as bigint.
import type { Generated, Insertable, Selectable } from 'kysely';

import type { UploadedPart } from '../lib/file-store.js';

export type FilePurpose = 'batch' | 'batch_output';
export type FileStatus = 'uploaded' | 'processed' | 'error';
export type BatchStatus =
  'validating' | 'failed' | 'in_progress' | 'finalizing' | 'completed' | 'expired' | 'cancelling' | 'cancelled';

/** States in which a batch's workflow is still working (and reading its input file). */
export const LIVE_BATCH_STATES = [
  'validating',
  'in_progress',
  'finalizing',
  'cancelling',
] as const satisfies readonly BatchStatus[];

export function isLive(status: BatchStatus): boolean {
  return (LIVE_BATCH_STATES as readonly BatchStatus[]).includes(status);
}

export interface ValidationError {
  code: string;
  message: string;
  param: string | null;
  line: number | null;
}

export interface ProjectsTable {
  id: string;
  name: string;
  created_at: number;
}

export interface ApiKeysTable {
  id: string;
  project_id: string;
  name: string;
  /** sha256 of the key; the key itself is shown once and never stored. */
  key_hash: string;
  key_prefix: string;
  created_at: number;
  revoked_at: number | null;
}

export interface FilesTable {
  id: string;
  seq: Generated<number>;
  project_id: string;
  filename: string;
  purpose: FilePurpose;
  bytes: number;
  status: FileStatus;
  status_details: string | null;
  created_at: number;
  expires_at: number | null;
  storage_key: string;
  /** Set when removal began (delete or expiry): the file is gone for the API; bytes and row follow. */
  deleted_at: number | null;
}

export interface BatchesTable {
  id: string;
  seq: Generated<number>;
  project_id: string;
  endpoint: string;
  model: string | null;
  input_file_id: string;
  completion_window: string;
  status: BatchStatus;
  output_file_id: string | null;
  error_file_id: string | null;
  /** jsonb: the postgres driver serialises and parses it. */
  errors: ValidationError[] | null;
  metadata: Record<string, string> | null;
  /** The batch whose failed lines this one re-runs (POST /v1/batches/{id}/retry). */
  retry_of: string | null;
  /** Temporal task queue priority, 1 (first) to 5; null: the default, 3. */
  priority: number | null;
  /** Seconds after completion that output and error files live (null: the 30-day default). */
  output_expires_after: number | null;
  created_at: number;
  expires_at: number;
  in_progress_at: number | null;
  finalizing_at: number | null;
  completed_at: number | null;
  failed_at: number | null;
  expired_at: number | null;
  cancelling_at: number | null;
  cancelled_at: number | null;
  request_total: Generated<number>;
  /** These counts and tokens are written when the batch ends; while it runs they are summed from result_groups. */
  request_completed: Generated<number>;
  request_failed: Generated<number>;
  input_tokens: Generated<number>;
  cached_tokens: Generated<number>;
  output_tokens: Generated<number>;
  reasoning_tokens: Generated<number>;
}

/**
 * Where finished requests are: their output lines are in a segment object of the file store (one per
 * flush, sorted by line, each line `<line>\t<output line>`), and this row says which lines of one
 * bucket of input lines (RESULT_BUCKET_LINES) that segment holds for the batch, and where. A line is
 * counted in exactly one row of its bucket, so it is written once whatever wrote it twice.
 */
export interface ResultGroupsTable {
  batch_id: string;
  /** floor(line / RESULT_BUCKET_LINES): what a writer locks and reads to skip lines already there. */
  bucket: number;
  /** The segment's key in the file store; null for lines kept in legacy_batch_results (before 0008). */
  segment: string | null;
  /** The bytes of the segment that hold this bucket's lines. */
  byte_start: number;
  byte_end: number;
  /** The lines this row counts, ascending; the segment may hold others (a second attempt's copies), which do not count. */
  lines: number[];
  /** Which of those failed (they go to the error file). */
  failed: number[];
  /** Token usage of the lines this row counts. */
  input_tokens: Generated<number>;
  cached_tokens: Generated<number>;
  output_tokens: Generated<number>;
  reasoning_tokens: Generated<number>;
}

/** Lines of a batch per result bucket: the dedup unit of results. */
export const RESULT_BUCKET_LINES = 1024;

/**
 * A batch's output or error file while it is being written, during the batch and at finalize: an
 * upload in parts (activities/output-draft.ts). Lines below next_line are in its parts or its tail.
 */
export interface OutputDraftsTable {
  batch_id: string;
  kind: 'output' | 'errors';
  /** The file store's upload: its id, so it can be resumed, completed or aborted. */
  upload_id: string;
  /** The parts written so far, in order: number, etag, bytes. */
  parts: UploadedPart[];
  /** Every line of this kind below this input line is in the parts or the tail. */
  next_line: Generated<number>;
  /** Lines in the parts and the tail. */
  lines: Generated<number>;
  /** Lines written after the last part but too few bytes for a part of their own (S3's 5 MiB): an object of their own. */
  tail_key: string | null;
  tail_bytes: Generated<number>;
  tail_lines: Generated<number>;
  /** Set once the upload is the file: its size. */
  completed_bytes: number | null;
}

/**
 * Output lines as they were kept in Postgres before results moved to the file store (0008): read only
 * for batches that were running across that upgrade, and removed when they finish.
 */
export interface LegacyBatchResultsTable {
  batch_id: string;
  line: number;
  custom_id: string;
  ok: boolean;
  /** The complete output-file line, serialized once when the request finishes. */
  output: string;
  input_tokens: number;
  cached_tokens: number;
  output_tokens: number;
  reasoning_tokens: number;
}

/** Requests that failed for good, with every attempt's error, for operators to inspect. */
export interface DeadLettersTable {
  batch_id: string;
  line: number;
  custom_id: string;
  attempts: number;
  errors: unknown[];
  created_at: number;
}

/** A POST made with an Idempotency-Key, and the answer every retry of it gets. */
export interface IdempotencyKeysTable {
  project_id: string;
  key: string;
  /** Method and route, e.g. "POST /v1/batches": a key belongs to one kind of request. */
  route: string;
  /** sha256 of a JSON body, to refuse the same key with different parameters. */
  request_hash: string | null;
  /** Null while the first request is still being answered. */
  status: number | null;
  response: string | null;
  created_at: number;
}

/** GPU workers announce what they serve here; the API reads it for /v1/models and validation. */
export interface WorkersTable {
  id: string;
  model: string;
  task_queue: string;
  gpu: string;
  host: string;
  engine_url: string;
  max_inflight: number;
  /** jsonb: the batch endpoints its engine serves (null: registered before they were recorded). */
  endpoints: string[] | null;
  started_at: number;
  last_seen_at: number;
}

export type CurationStatus = 'running' | 'completed' | 'skipped' | 'failed';

export interface CurationProjectsTable {
  key: string;
  /** Null until Label Studio has answered the create (a crash in between is found by title). */
  ls_project_id: number | null;
  title: string;
  schema: string;
  created_at: number;
  /** The API project it was made for (null: made before projects owned theirs). */
  owner_project_id: string | null;
  /** When an import worker claimed the creation (a lease: an older claim may be taken over). */
  claimed_at: number | null;
  /** Whether Label Studio's annotation webhook is set up on it. */
  webhook_registered: Generated<boolean>;
}

/** Label Studio projects an operator lets an API project import into by id (metadata curation_project). */
export interface CurationGrantsTable {
  project_id: string;
  ls_project_id: number;
  created_at: number;
}

export interface CurationsTable {
  batch_id: string;
  status: CurationStatus;
  reason: string | null;
  schema: string | null;
  ls_project_id: number | null;
  tasks_total: Generated<number>;
  tasks_imported: Generated<number>;
  pages_total: Generated<number>;
  pages_done: Generated<number>;
  reviewed: Generated<number>;
  started_at: number;
  finished_at: number | null;
}

export interface CurationPagesTable {
  batch_id: string;
  page: number;
  status: 'posting' | 'done';
  tasks: number;
  ls_task_ids: number[] | null;
  updated_at: number;
}

export interface CurationReviewsTable {
  ls_project_id: number;
  ls_task_id: number;
  batch_id: string | null;
  custom_id: string | null;
  action: string;
  annotation_id: number | null;
  received_at: number;
}

export const WEBHOOK_EVENTS = ['batch.completed', 'batch.failed', 'batch.expired', 'batch.cancelled'] as const;
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];

export interface WebhooksTable {
  id: string;
  project_id: string;
  url: string;
  /** Standard Webhooks signing secret, whsec_…. */
  secret: string;
  events: WebhookEvent[];
  created_at: number;
  deleted_at: number | null;
}

export interface WebhookDeliveriesTable {
  id: string;
  webhook_id: string;
  event_id: string;
  event_type: WebhookEvent;
  batch_id: string;
  /** The exact body, signed and sent as is on every attempt. */
  payload: string;
  status: 'pending' | 'delivered' | 'failed';
  attempts: Generated<number>;
  last_error: string | null;
  created_at: number;
  delivered_at: number | null;
}

export interface WebhookAttemptsTable {
  delivery_id: string;
  attempt: number;
  at: number;
  status_code: number | null;
  error: string | null;
  duration_ms: number;
}

export interface Database {
  projects: ProjectsTable;
  api_keys: ApiKeysTable;
  files: FilesTable;
  batches: BatchesTable;
  legacy_batch_results: LegacyBatchResultsTable;
  result_groups: ResultGroupsTable;
  output_drafts: OutputDraftsTable;
  dead_letters: DeadLettersTable;
  workers: WorkersTable;
  idempotency_keys: IdempotencyKeysTable;
  curation_projects: CurationProjectsTable;
  curation_grants: CurationGrantsTable;
  curations: CurationsTable;
  curation_pages: CurationPagesTable;
  curation_reviews: CurationReviewsTable;
  webhooks: WebhooksTable;
  webhook_deliveries: WebhookDeliveriesTable;
  webhook_attempts: WebhookAttemptsTable;
}

export type FileRow = Selectable<FilesTable>;
export type NewFile = Insertable<FilesTable>;
export type BatchRow = Selectable<BatchesTable>;
export type NewBatch = Insertable<BatchesTable>;
export type NewResultGroup = Insertable<ResultGroupsTable>;
