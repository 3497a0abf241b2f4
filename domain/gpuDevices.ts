/**
 * The accelerators a gpu worker serves, one task queue and one job at a time each. A device is what
 * CUDA_VISIBLE_DEVICES accepts for one GPU (an index such as `0`, or a `GPU-…` / `MIG-…` UUID), or `cpu`
 * on a machine without one, where the single "device" is the whole CPU.
 */

export const CPU_DEVICE = 'cpu';

const DEVICE_PATTERN = /^(\d+|(GPU|MIG)-[A-Za-z0-9/_-]+)$/;

/**
 * The devices a gpu worker serves: `--gpus 0,1` if given, else the worker's CUDA_VISIBLE_DEVICES, else one
 * `cpu` device. CUDA_VISIBLE_DEVICES set to '' or '-1' hides every GPU, so the worker runs on the CPU.
 * Throws an Error naming the option and the bad entry.
 */
export function parseGpuList(option: string | undefined, env: NodeJS.ProcessEnv): string[] {
  if (option !== undefined) return parseDeviceList(option, '--gpus', true);
  const visible = env.CUDA_VISIBLE_DEVICES;
  if (visible === undefined || visible.trim() === '' || visible.trim() === '-1') return [CPU_DEVICE];
  return parseDeviceList(visible, 'CUDA_VISIBLE_DEVICES', false);
}

function parseDeviceList(list: string, source: string, allowCpu: boolean): string[] {
  const entries = list.split(',').map((entry) => entry.trim());
  if (entries.every((entry) => entry === ''))
    throw new Error(`${source} names no device (expected e.g. "0,1"${allowCpu ? ' or "cpu"' : ''})`);
  const seen = new Set<string>();
  for (const entry of entries) {
    const valid = DEVICE_PATTERN.test(entry) || (allowCpu && entry === CPU_DEVICE);
    if (!valid) {
      throw new Error(
        `${source}: ${JSON.stringify(entry)} is not a device (expected a GPU index such as 0, a GPU-/MIG- UUID` +
          `${allowCpu ? ', or "cpu" alone' : ''}; in ${JSON.stringify(list)})`,
      );
    }
    if (seen.has(entry)) throw new Error(`${source}: device ${JSON.stringify(entry)} is listed twice`);
    seen.add(entry);
  }
  if (seen.has(CPU_DEVICE) && seen.size > 1)
    throw new Error(`${source}: "cpu" cannot be combined with GPUs (in ${JSON.stringify(list)})`);
  return entries;
}

/** Environment for a process that must see only `device`: CUDA_VISIBLE_DEVICES=<device>, nothing for `cpu`. */
export function deviceEnv(device: string): Record<string, string> {
  return device === CPU_DEVICE ? {} : { CUDA_VISIBLE_DEVICES: device };
}
