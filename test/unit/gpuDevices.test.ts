import { describe, expect, it } from 'vitest';
import { CPU_DEVICE, deviceEnv, parseGpuList } from '../../domain/gpuDevices';
import { gpuDeviceQueue, queuePrefixOf } from '../../domain/taskQueues';

describe('parseGpuList', () => {
  it('takes --gpus over CUDA_VISIBLE_DEVICES', () => {
    expect(parseGpuList('0,1', { CUDA_VISIBLE_DEVICES: '2,3' })).toEqual(['0', '1']);
    expect(parseGpuList(' 3 , 1 ', {})).toEqual(['3', '1']);
    expect(parseGpuList('cpu', { CUDA_VISIBLE_DEVICES: '0' })).toEqual([CPU_DEVICE]);
  });

  it('falls back to CUDA_VISIBLE_DEVICES, passing its entries through (indices or UUIDs)', () => {
    expect(parseGpuList(undefined, { CUDA_VISIBLE_DEVICES: '4,5' })).toEqual(['4', '5']);
    expect(
      parseGpuList(undefined, { CUDA_VISIBLE_DEVICES: 'GPU-8f3a1c2e-1111-2222-3333-444455556666,MIG-abc' }),
    ).toEqual(['GPU-8f3a1c2e-1111-2222-3333-444455556666', 'MIG-abc']);
  });

  it('is one cpu device when no GPU is visible', () => {
    expect(parseGpuList(undefined, {})).toEqual(['cpu']);
    expect(parseGpuList(undefined, { CUDA_VISIBLE_DEVICES: '' })).toEqual(['cpu']);
    expect(parseGpuList(undefined, { CUDA_VISIBLE_DEVICES: '-1' })).toEqual(['cpu']);
  });

  it('names the option and the entry that is wrong', () => {
    expect(() => parseGpuList('0,x', {})).toThrow(/--gpus: "x" is not a device/);
    expect(() => parseGpuList('', {})).toThrow(/--gpus names no device/);
    expect(() => parseGpuList('0,0', {})).toThrow(/--gpus: device "0" is listed twice/);
    expect(() => parseGpuList('cpu,0', {})).toThrow(/--gpus: "cpu" cannot be combined/);
    expect(() => parseGpuList('-1', {})).toThrow(/--gpus: "-1" is not a device/);
    expect(() => parseGpuList(undefined, { CUDA_VISIBLE_DEVICES: '0,gpu1' })).toThrow(
      /CUDA_VISIBLE_DEVICES: "gpu1" is not a device/,
    );
    // `cpu` is our word, not CUDA's.
    expect(() => parseGpuList(undefined, { CUDA_VISIBLE_DEVICES: 'cpu' })).toThrow(/CUDA_VISIBLE_DEVICES/);
  });
});

describe('device environment and queues', () => {
  it('pins a GPU by CUDA_VISIBLE_DEVICES and leaves the cpu device alone', () => {
    expect(deviceEnv('1')).toEqual({ CUDA_VISIBLE_DEVICES: '1' });
    expect(deviceEnv('cpu')).toEqual({});
  });

  it('names a device queue after the prefix, host and device; it is not a role queue', () => {
    expect(gpuDeviceQueue('entropo', 'node-7', '0')).toBe('entropo-gpu@node-7/0');
    expect(queuePrefixOf(gpuDeviceQueue('entropo', 'node-7', '0'))).not.toBe('entropo');
  });
});
