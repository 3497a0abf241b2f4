// Everything the worker bundles as workflow code: deterministic orchestration only.
export { gradeInstanceWorkflow } from './gradeInstance';
export { pipelineProgressQuery, pipelineWorkflow } from './pipeline';
export {
  pairingStageWorkflow,
  poolStageWorkflow,
  sftStageWorkflow,
  trainingStageWorkflow,
  ttsStageWorkflow,
} from './pipelineStages';
export { regressionCheckWorkflow } from './regressionCheck';
export { rolloutWorkflow } from './rollout';
export { rolloutPoolProgressQuery, rolloutPoolWorkflow } from './rolloutPool';
export { validateTasksWorkflow, validationProgressQuery } from './validateTasks';
