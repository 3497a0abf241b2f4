import { spawnSync } from 'node:child_process';
import { it } from 'vitest';
import { PROJECT_ROOT } from '../../activities/paths';

export const dockerRequired = process.env.ENTROPO_REQUIRE_DOCKER === '1';

/** For test collection, which is synchronous: the same check, run in a child process. */
function dockerAvailabilitySync(): { ok: true } | { ok: false; reason: string } {
  const r = spawnSync(
    process.execPath,
    [
      '--import',
      'tsx',
      '-e',
      `require('./test/helpers/dockerAvailability').dockerAvailability().then((a) => process.stdout.write(JSON.stringify(a)))`,
    ],
    { cwd: PROJECT_ROOT, encoding: 'utf8', timeout: 300_000 },
  );
  try {
    return JSON.parse(r.stdout) as { ok: true } | { ok: false; reason: string };
  } catch {
    return { ok: false, reason: `the availability check failed: ${r.stderr || r.error}` };
  }
}

/** At collection: true when the docker suites can run; otherwise says why, loudly (and fails if required). */
export function dockerOrExplain(what: string): boolean {
  const availability = dockerAvailabilitySync();
  if (availability.ok) return true;
  const banner = `DOCKER UNAVAILABLE: ${what} NOT RUN: ${availability.reason}`;
  if (dockerRequired) {
    it('has a Docker engine (ENTROPO_REQUIRE_DOCKER=1)', () => {
      throw new Error(banner);
    });
  } else {
    console.error(`\n${'!'.repeat(100)}\n${banner}\n${'!'.repeat(100)}\n`);
    it.skip(banner, () => {});
  }
  return false;
}
