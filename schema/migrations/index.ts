import type { Migration } from 'kysely';

import * as m0001 from './0001_initial.js';
import * as m0002 from './0002_batch_priority.js';
import * as m0003 from './0003_idempotency_and_retries.js';
import * as m0004 from './0004_curation.js';
import * as m0005 from './0005_operations.js';
import * as m0006 from './0006_webhook_history.js';
import * as m0007 from './0007_hardening.js';
import * as m0008 from './0008_result_segments.js';
import * as m0009 from './0009_output_drafts.js';

// Listed by hand (not read from the folder) so the same list works under tsx and compiled.
export const migrations: Record<string, Migration> = {
  '0001_initial': m0001,
  '0002_batch_priority': m0002,
  '0003_idempotency_and_retries': m0003,
  '0004_curation': m0004,
  '0005_operations': m0005,
  '0006_webhook_history': m0006,
  '0007_hardening': m0007,
  '0008_result_segments': m0008,
  '0009_output_drafts': m0009,
};
