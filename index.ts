// sbgc library entry.
export * from './engine/errors.js';
export { Engine, ENGINE_VERSION, type EngineOptions, type MemoryStats, type Program } from './engine/engine.js';
export { Tensor, type DType, type HostArray } from './engine/tensor.js';
export type { KernelSource, BufferDecl } from './engine/kernel.js';
export type { PoolStats } from './engine/pool.js';
export type { KernelTime } from './engine/profiler.js';
export * from './engine/rng.js';
export * from './engine/autodiff.js';
export * as elementwise from './kernels/elementwise.js';
export * from './engine/npy.js';
export { readFileBytes } from './engine/files.js';
export * from './model/safetensors.js';
export * from './model/config.js';
export { paramSpec, countParams } from './model/param-spec.js';
export { networkPlan } from './model/network-plan.js';
export { forwardFlops } from './model/flops.js';
export * from './solvers/dormand-prince.js';
