// Starting a child workflow the parent leaves behind (webhook deliveries, the curation import): it
// outlives the parent, so nothing it waits on can hold the parent open.
import { WorkflowExecutionAlreadyStartedError, type Workflow } from '@temporalio/common';
import { ParentClosePolicy, startChild } from '@temporalio/workflow';

/** Starts the child under its fixed id; one already there (a replayed or retried start) is the point of that id. */
export async function startAbandonedChild<T extends Workflow>(
  workflow: T,
  /** staticSummary: the child's line in the Temporal UI. */
  options: { workflowId: string; taskQueue: string; args: Parameters<T>; staticSummary: string },
): Promise<void> {
  // Typed by this function's signature; startChild cannot resolve its own for a generic workflow.
  const child: Workflow = workflow;
  try {
    await startChild(child, { ...options, parentClosePolicy: ParentClosePolicy.ABANDON });
  } catch (err) {
    if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
  }
}
