// Everything the orchestrator worker registers; Temporal bundles this file and what it imports.
export { BatchWorkflow } from './batch.js';
