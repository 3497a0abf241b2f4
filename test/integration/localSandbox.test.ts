import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArtifactStore } from '../../activities/artifacts';
import {
  BaseCommitMissingError,
  type LocalSandbox,
  LocalSandboxBackend,
} from '../../activities/localSandbox';
import { PROJECT_ROOT } from '../../activities/paths';
import { createSandbox } from '../../activities/sandbox';
import { SandboxPool } from '../../activities/sandboxPool';
import { instanceSchema } from '../../domain/instance';
import { sandboxConfigSchema, sandboxLimitsSchema } from '../../domain/runConfig';
import { FIXTURE_REPO, fixtureInstances, isolatedHome } from '../helpers/env';

const home = isolatedHome('sandbox');
const backend = new LocalSandboxBackend(path.join(home, 'sandboxes'));
const instance = fixtureInstances()[0]!;
const opts = { timeoutSec: 20, outputLimitBytes: 64 * 1024 };
const request = {
  instanceId: instance.instance_id as string,
  baseCommit: instance.base_commit as string,
  limits: sandboxLimitsSchema.parse({}),
};
let a: LocalSandbox;

beforeAll(async () => {
  const source = { kind: 'git' as const, path: FIXTURE_REPO };
  a = await backend.create({ ...request, sandboxId: 'sbx-a', source });
});
afterAll(() => backend.destroyAll());

/** What only the local backend has; the behaviour both backends share is in test/sandbox/suites.ts. */
describe('local bubblewrap sandbox', () => {
  it('creates a sandbox from a tarball of the repository too', async () => {
    const tarball = path.join(home, 'repo.tar');
    spawnSync('tar', ['-C', FIXTURE_REPO, '-cf', tarball, '.']);
    const t = await backend.create({
      ...request,
      sandboxId: 'sbx-tar',
      source: { kind: 'tarball', path: tarball },
      baseCommit: instance.base_commit as string,
    });
    const r = await t.exec(
      'git rev-parse HEAD; git status --porcelain | wc -l; ' +
        'git cat-file --batch-all-objects --batch-check | wc -l; git rev-list --objects HEAD | wc -l',
      opts,
    );
    const [head, dirty, stored, reachable] = r.stdout.trim().split('\n');
    expect([head, dirty]).toEqual([instance.base_commit, '0']);
    // The tarball's git store held every task's history; the sandbox's holds the base's only.
    expect(stored).toBe(reachable);
    await backend.destroy('sbx-tar');
    expect(fs.existsSync(t.dir)).toBe(false);
  });

  it('fails at once, without retries, when the base commit is not in the repository', async () => {
    const missing = 'f'.repeat(40);
    await expect(
      backend.create({
        ...request,
        sandboxId: 'sbx-nobase',
        source: { kind: 'git', path: FIXTURE_REPO },
        baseCommit: missing,
      }),
    ).rejects.toThrow(BaseCommitMissingError);
    expect(fs.existsSync(path.join(backend.root, 'sbx-nobase'))).toBe(false);
    // Through the activity: a non-retryable failure that names the commit and the repository.
    const store = new ArtifactStore();
    const { id: instanceRef } = await store.putJson(
      instanceSchema.parse({ ...instance, base_commit: missing }),
    );
    const failure = await new MockActivityEnvironment()
      .run(
        createSandbox,
        {
          store,
          sandboxes: new SandboxPool(backend),
          ownTaskQueue: 'q',
          defaults: sandboxConfigSchema.parse({}),
        },
        { sandboxId: 'sbx-nobase-activity', instanceRef },
      )
      .catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(ApplicationFailure);
    expect((failure as ApplicationFailure).nonRetryable).toBe(true);
    expect((failure as ApplicationFailure).type).toBe('BaseCommitMissingError');
    expect((failure as Error).message).toContain(missing);
    expect((failure as Error).message).toContain(FIXTURE_REPO);
  });

  it('never writes or reads through a link the sandbox made to a host path', async () => {
    const hostDir = fs.mkdtempSync(path.join(home, 'host-'));
    fs.writeFileSync(path.join(hostDir, 'secret'), 'host secret\n');
    const made = await a.exec(
      `ln -s ${hostDir} dirlink && ln -s ${hostDir}/new-file filelink && ln -s ${hostDir}/secret readlink`,
      opts,
    );
    expect(made.exitCode, made.stderr).toBe(0);
    await expect(a.writeFile('dirlink/new/x.txt', 'x')).rejects.toThrow(/outside the repository/);
    await expect(a.writeFile('filelink', 'x')).rejects.toThrow(/link to nowhere/);
    await expect(a.readFile('readlink')).rejects.toThrow(/outside the repository/);
    expect(fs.readdirSync(hostDir)).toEqual(['secret']);
    await a.exec('rm dirlink filelink readlink', opts);
  });

  it('sweeps sandboxes of dead workers on start, keeps live ones', async () => {
    const orphan = path.join(backend.root, 'orphan-1');
    fs.mkdirSync(path.join(orphan, 'repo'), { recursive: true });
    const dead = spawnSync('true').pid!;
    fs.writeFileSync(
      path.join(orphan, 'owner.json'),
      JSON.stringify({ pid: dead, hostname: require('node:os').hostname() }),
    );
    const other = new LocalSandboxBackend(backend.root);
    expect(await other.sweepOrphans()).toEqual(['orphan-1']);
    expect(fs.existsSync(a.dir)).toBe(true); // owned by this live process
  });

  it('says how to install bwrap when it is missing', () => {
    const bin = fs.mkdtempSync(path.join(home, 'nobwrap-'));
    fs.symlinkSync(process.execPath, path.join(bin, 'node'));
    const r = spawnSync(
      process.execPath,
      ['--import', 'tsx', '-e', `require('./activities/localSandbox').assertBwrapAvailable()`],
      { cwd: PROJECT_ROOT, env: { ...process.env, PATH: bin }, encoding: 'utf8' },
    );
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain('apt-get install -y bubblewrap');
  });
});
