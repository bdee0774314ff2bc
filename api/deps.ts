// What the API's services, middleware and routes are built from: one set of clients, passed in so
// tests and the CLI can point them at real local services. A service takes `Pick<ApiDeps, ...>` of
// what it uses, always first: `fn(deps, project, input)`, or `fn(deps, input)` where no project is involved.
import type { Client } from '@temporalio/client';

import type { Config } from '../lib/config.js';
import type { CurationRegistry } from '../lib/curation-schema.js';
import type { FileStore } from '../lib/file-store.js';
import type { LabelStudio } from '../lib/label-studio.js';
import type { Logger } from '../lib/logger.js';
import type { Db } from '../schema/db.js';

export interface ApiDeps {
  config: Config;
  db: Db;
  store: FileStore;
  temporal: Client;
  log: Logger;
  registry: CurationRegistry;
  /** Undefined when no Label Studio is configured. */
  labelStudio: LabelStudio | undefined;
}
