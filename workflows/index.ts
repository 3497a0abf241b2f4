// Everything the worker bundles as workflow code: deterministic orchestration only.
export { gradeInstanceWorkflow } from './gradeInstance';
export { validateTasksWorkflow, validationProgressQuery } from './validateTasks';
