import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * The command prefix that makes the kernel send `signal` to a child when the process that started it dies,
 * even by SIGKILL: `setpriv --pdeathsig` (util-linux). A dev server, a model server or an engine job then
 * never outlives its launcher or worker, so a retried attempt elsewhere never races an orphan.
 * Empty when setpriv is missing (the child is then only stopped by an orderly shutdown).
 */
export function parentDeathWrapper(signal: 'TERM' | 'KILL' = 'TERM'): string[] {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
    const candidate = path.join(dir, 'setpriv');
    if (dir && fs.existsSync(candidate)) return [candidate, '--pdeathsig', signal, '--'];
  }
  return [];
}
