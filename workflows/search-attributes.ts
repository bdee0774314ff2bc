// What operators filter batches by in the Temporal Web UI. temporal-dev.yaml registers these on the
// dev server; a unit test keeps the two lists in step.
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

export const BatchStatusKey = defineSearchAttributeKey('BatchStatus', SearchAttributeType.KEYWORD);
export const BatchModelKey = defineSearchAttributeKey('BatchModel', SearchAttributeType.KEYWORD);
export const BatchProjectKey = defineSearchAttributeKey('BatchProject', SearchAttributeType.KEYWORD);
export const BatchEndpointKey = defineSearchAttributeKey('BatchEndpoint', SearchAttributeType.KEYWORD);
export const BatchRequestCountKey = defineSearchAttributeKey('BatchRequestCount', SearchAttributeType.INT);
/** Where a batch's import into Label Studio stands (on its AutoImportWorkflow). */
export const CurationStatusKey = defineSearchAttributeKey('CurationStatus', SearchAttributeType.KEYWORD);

export const ALL_SEARCH_ATTRIBUTES = [
  BatchStatusKey,
  BatchModelKey,
  BatchProjectKey,
  BatchEndpointKey,
  BatchRequestCountKey,
  CurationStatusKey,
];
