/**
 * Builds the task fixtures in `tasks/fixtures/` from real code: the pinned sdist of a PyPI package
 * (hash-checked by pip), one git repository whose branches each hold the package with one real bug
 * reintroduced (a root commit with fixed author/date, so `base_commit` is identical on every machine),
 * and SWE-bench instances whose FAIL_TO_PASS / PASS_TO_PASS come from running the package's own tests.
 *
 *   node --import tsx infra/buildFixtures.ts           # build repos; check instances.jsonl is unchanged
 *   node --import tsx infra/buildFixtures.ts --write   # …and (re)write instances.jsonl
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PROJECT_ROOT, venvBin } from '../activities/paths';
import { fetchSdist } from '../activities/taskBuilder';
import { parsePytestLog } from '../domain/testLog';

interface BugSpec {
  instance_id: string;
  file: string;
  find: string;
  replace: string;
  problem_statement: string;
  regression_test: string;
}

interface FixtureSpec {
  package: string;
  version: string;
  repo: string;
  test_command: string;
  test_file: string;
  bugs: BugSpec[];
}

const FIXTURES = path.join(PROJECT_ROOT, 'tasks', 'fixtures');
const COMMIT_ENV = {
  GIT_AUTHOR_NAME: 'entropo fixtures',
  GIT_AUTHOR_EMAIL: 'fixtures@entropo.invalid',
  GIT_AUTHOR_DATE: '2020-08-22T00:00:00Z',
  GIT_COMMITTER_NAME: 'entropo fixtures',
  GIT_COMMITTER_EMAIL: 'fixtures@entropo.invalid',
  GIT_COMMITTER_DATE: '2020-08-22T00:00:00Z',
};

function sh(command: string, args: string[], cwd: string, allowFailure = false): string {
  try {
    return execFileSync(command, args, {
      cwd,
      env: { ...process.env, ...COMMIT_ENV, PYTHONDONTWRITEBYTECODE: '1' },
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (e) {
    if (allowFailure) return (e as { stdout?: string }).stdout ?? '';
    throw e;
  }
}

/** The pinned sdist (name==version --hash=sha256:… in infra/task-sources.txt), hash-checked by pip. */
function fixtureSdist(spec: FixtureSpec): string {
  const pins = fs.readFileSync(path.join(PROJECT_ROOT, 'infra', 'task-sources.txt'), 'utf8');
  const pin = new RegExp(
    `^${spec.package}==${spec.version.replace(/\./g, '\\.')} --hash=sha256:([0-9a-f]{64})$`,
    'm',
  ).exec(pins);
  if (!pin) throw new Error(`infra/task-sources.txt pins no ${spec.package}==${spec.version}`);
  return fetchSdist({ name: spec.package, version: spec.version, sha256: pin[1]! });
}

function runTests(repo: string, spec: FixtureSpec) {
  const [program, ...args] = spec.test_command.split(' ');
  const python = program === 'python' ? path.join(venvBin(), 'python') : program!;
  return parsePytestLog(sh(python, args, repo, true));
}

/** What the repository was built from: the bug specs, the pins, the instances and this builder. */
function inputsDigest(): string {
  const hash = createHash('sha256');
  for (const file of [
    path.join(FIXTURES, 'bugs.json'),
    path.join(FIXTURES, 'instances.jsonl'),
    path.join(PROJECT_ROOT, 'infra', 'task-sources.txt'),
    __filename,
  ]) {
    hash.update(fs.existsSync(file) ? fs.readFileSync(file) : `missing ${file}`);
  }
  return hash.digest('hex');
}

/**
 * The repository from an earlier build is still right: built from the same inputs, and every instance's
 * branch still at its base commit (a commit id covers the whole tree). Then setup skips the rebuild.
 */
function upToDate(repo: string, stamp: string): boolean {
  if (!fs.existsSync(stamp) || fs.readFileSync(stamp, 'utf8') !== inputsDigest()) return false;
  const file = path.join(FIXTURES, 'instances.jsonl');
  const instances = fs
    .readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as { instance_id: string; base_commit: string });
  return instances.every(
    (i) =>
      sh('git', ['rev-parse', '--verify', '-q', `${i.instance_id}^{commit}`], repo, true).trim() ===
      i.base_commit,
  );
}

function build(write: boolean): void {
  const spec = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'bugs.json'), 'utf8')) as FixtureSpec;
  const repo = path.join(FIXTURES, 'repos', spec.package);
  const stamp = path.join(FIXTURES, 'repos', '.built-from');
  if (!write && upToDate(repo, stamp)) {
    process.stderr.write('  up to date\n');
    return;
  }
  const tarball = fixtureSdist(spec);
  fs.rmSync(stamp, { force: true });
  fs.rmSync(repo, { recursive: true, force: true });
  fs.mkdirSync(repo, { recursive: true });
  sh('tar', ['-xzf', tarball, '-C', repo, '--strip-components=1', '--no-same-owner'], repo);
  sh('git', ['init', '--quiet', '--initial-branch=upstream'], repo);
  sh('git', ['config', 'core.autocrlf', 'false'], repo);
  sh('git', ['add', '-A'], repo);
  sh('git', ['commit', '--quiet', '--no-gpg-sign', '-m', `${spec.package} ${spec.version} from PyPI`], repo);

  const instances: object[] = [];
  for (const bug of spec.bugs) {
    sh('git', ['checkout', '--quiet', '--force', 'upstream'], repo);
    const target = path.join(repo, bug.file);
    const fixed = fs.readFileSync(target, 'utf8');
    if (!fixed.includes(bug.find))
      throw new Error(`${bug.instance_id}: text to replace not found in ${bug.file}`);
    // The task's base: a root commit with the bug in, so the fix is nowhere in its history.
    sh('git', ['checkout', '--quiet', '--orphan', bug.instance_id], repo);
    fs.writeFileSync(target, fixed.replace(bug.find, bug.replace));
    sh('git', ['add', '-A'], repo);
    sh('git', ['commit', '--quiet', '--no-gpg-sign', '-m', `${spec.package} ${spec.version}`], repo);
    const baseCommit = sh('git', ['rev-parse', 'HEAD'], repo).trim();

    fs.writeFileSync(target, fixed);
    const patch = sh('git', ['diff', '--no-color', 'HEAD', '--', bug.file], repo);
    sh('git', ['checkout', '--quiet', '--', bug.file], repo);
    const testPath = path.join(repo, spec.test_file);
    fs.appendFileSync(testPath, bug.regression_test);
    const testPatch = sh('git', ['diff', '--no-color', 'HEAD', '--', spec.test_file], repo);

    const before = runTests(repo, spec); // bug + new tests
    fs.writeFileSync(target, fixed);
    const after = runTests(repo, spec); // fix + new tests
    sh('git', ['checkout', '--quiet', '--force', 'HEAD'], repo);

    const passedAfter = Object.keys(after)
      .filter((t) => after[t] === 'PASSED')
      .sort();
    const failToPass = passedAfter.filter((t) => before[t] !== 'PASSED');
    const passToPass = passedAfter.filter((t) => before[t] === 'PASSED');
    if (failToPass.length === 0) throw new Error(`${bug.instance_id}: the bug breaks no test`);
    instances.push({
      instance_id: bug.instance_id,
      repo: spec.repo,
      base_commit: baseCommit,
      patch,
      test_patch: testPatch,
      problem_statement: bug.problem_statement,
      FAIL_TO_PASS: failToPass,
      PASS_TO_PASS: passToPass,
      version: spec.version,
      source: { kind: 'git', path: `repos/${spec.package}` },
      test_command: spec.test_command,
      log_parser: 'pytest',
    });
    process.stderr.write(
      `  ${bug.instance_id}: base ${baseCommit.slice(0, 12)}, ${failToPass.length} FAIL_TO_PASS, ${passToPass.length} PASS_TO_PASS\n`,
    );
  }
  sh('git', ['checkout', '--quiet', '--force', 'upstream'], repo);

  const jsonl = `${instances.map((i) => JSON.stringify(i)).join('\n')}\n`;
  const file = path.join(FIXTURES, 'instances.jsonl');
  if (write) {
    fs.writeFileSync(file, jsonl);
  } else if (!fs.existsSync(file) || fs.readFileSync(file, 'utf8') !== jsonl) {
    throw new Error(
      `${file} differs from what the builder produces here; rebuild it with --write and review the diff`,
    );
  }
  fs.writeFileSync(stamp, inputsDigest());
}

build(process.argv.includes('--write'));
