// The types of the ApplicationFailures activities throw, and how a failure reads once it reaches a
// workflow. Pure (no Node, no I/O): activities throw with these types and workflows list them as
// not retryable, so both import this one module.
import { rootCause } from '@temporalio/common';

export const FailureType = {
  /** The batch's row is gone: retrying cannot make it appear. */
  BatchNotFound: 'BatchNotFound',
  /** A chunk's engine went away; Temporal retries the chunk, maybe on another GPU. */
  EngineUnavailable: 'EngineUnavailable',
  /** A chunk's engine refused the worker's key. */
  EngineAuthFailed: 'EngineAuthFailed',
  /** Label Studio refused the API key. */
  LabelStudioAuthError: 'LabelStudioAuthError',
  /** Label Studio answered a request with a refusal that asking again will not change. */
  LabelStudioRefused: 'LabelStudioRefused',
  /** The batch's curation choice (schema, project) cannot be used. */
  CurationChoiceError: 'CurationChoiceError',
  /** Another import is creating the same Label Studio project; retried. */
  CurationProjectBusy: 'CurationProjectBusy',
  /** A webhook endpoint did not take the event; retried. */
  WebhookDeliveryFailed: 'WebhookDeliveryFailed',
} as const;

export type FailureType = (typeof FailureType)[keyof typeof FailureType];

/** The failure types that end an import at once (retrying cannot fix them). */
export const CURATION_NOT_RETRYABLE: FailureType[] = [
  FailureType.LabelStudioAuthError,
  FailureType.CurationChoiceError,
  FailureType.LabelStudioRefused,
];

/**
 * What went wrong, for a user to read: an activity's failure wraps the ApplicationFailure that says
 * it. Bounded, because the reason travels on in history (as the next activity's input) and into rows.
 */
export function reasonOf(err: unknown): string {
  return (rootCause(err) ?? String(err)).slice(0, 500);
}
