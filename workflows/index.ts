// Everything the orchestrator worker registers; Temporal bundles this file and what it imports.
export { AutoImportWorkflow } from './auto-import.js';
export { BatchWorkflow } from './batch.js';
export { WebhookDeliveryWorkflow } from './webhook-delivery.js';
