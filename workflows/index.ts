// Everything the worker bundles as workflow code: deterministic orchestration only.
export { gradeInstanceWorkflow } from './gradeInstance';
export { rolloutWorkflow } from './rollout';
export { rolloutPoolProgressQuery, rolloutPoolWorkflow } from './rolloutPool';
export { validateTasksWorkflow, validationProgressQuery } from './validateTasks';
