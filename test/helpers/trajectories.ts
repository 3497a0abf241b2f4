import type { ArtifactStore } from '../../activities/artifacts';
import type { TrajectoryRecord } from '../../domain/agent/trajectory';

/**
 * A trajectory without what depends on time, for comparing an interrupted run with an uninterrupted one:
 * the step timings, and the durations pytest prints in an observation ("4 passed in 0.53s"), which is why
 * observations are compared as text.
 */
export async function comparableTrajectory(store: ArtifactStore, trajectoryId: string) {
  const record = await store.getJson<TrajectoryRecord>(trajectoryId);
  const steps = [];
  for (const { llmMs: _l, toolMs: _t, observationId, ...step } of record.steps) {
    const observation = observationId === null ? null : await store.getText(observationId);
    steps.push({ ...step, observation: observation?.replace(/ in \d+\.\d+s\b/g, ' in <time>') ?? null });
  }
  return { steps, exitReason: record.exitReason, patch: record.patch, resolved: record.resolved };
}
