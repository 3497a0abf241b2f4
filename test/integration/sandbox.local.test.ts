import * as path from 'node:path';
import { ArtifactStore } from '../../activities/artifacts';
import { LocalSandboxBackend } from '../../activities/localSandbox';
import { SandboxPool } from '../../activities/sandboxPool';
import { instanceSchema } from '../../domain/instance';
import { fixtureInstances, isolatedHome } from '../helpers/env';
import {
  conformanceSuite,
  containmentSuite,
  historyInstances,
  localHarness,
  repositoryHistorySuite,
} from '../sandbox/suites';

const home = isolatedHome('sbx-local');
const pool = new SandboxPool(new LocalSandboxBackend(path.join(home, 'sandboxes')));
const instances = fixtureInstances().map((row) => instanceSchema.parse(row));

const harness = localHarness(pool, new ArtifactStore(), instances);

conformanceSuite(harness);
containmentSuite(harness);
repositoryHistorySuite(harness, historyInstances(path.join(home, 'later-fix')));
