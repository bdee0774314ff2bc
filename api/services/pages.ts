// Lists are paged by `after` (an id of the project's own) and `limit`, newest first unless asked
// otherwise: the cursor is the row's `seq`, so a page never skips or repeats a row.
import { isWellFormedId } from '../../lib/ids.js';
import type { ApiDeps } from '../deps.js';
import { BadRequestError } from '../errors.js';
import type { Project } from './keys.js';

export interface Page<T> {
  rows: T[];
  hasMore: boolean;
}

/** The `seq` of the row an `after` cursor names; a cursor that is not the project's own row is refused. */
export async function cursorSeq(
  deps: Pick<ApiDeps, 'db'>,
  project: Project,
  table: 'batches' | 'files',
  after: string,
): Promise<number> {
  const kind = table === 'batches' ? 'batch' : 'file';
  if (!isWellFormedId(after))
    throw new BadRequestError(`Invalid value for 'after': not a ${kind} id.`, {
      code: 'invalid_value',
      param: 'after',
    });
  const cursor = await deps.db
    .selectFrom(table)
    .select('seq')
    .where('id', '=', after)
    .where('project_id', '=', project.id)
    .executeTakeFirst();
  if (cursor === undefined)
    throw new BadRequestError(`Invalid value for 'after': no ${kind} ${after}.`, {
      code: 'invalid_value',
      param: 'after',
    });
  return cursor.seq;
}

/** Rows fetched with `limit + 1`, as a page: the extra row only says there is more. */
export function toPage<T>(rows: T[], limit: number): Page<T> {
  return { rows: rows.slice(0, limit), hasMore: rows.length > limit };
}
