// The data layer: datasets, model-space conversion and bits/dim (SPEC §1). See data/README.md.
export * from './dataset.js';
export * from './model-space.js';
export * from './model-space-images.js';
export * from './mnist.js';
export * from './cifar10.js';
export * from './cifar10c.js';
export * from './png-folder.js';
export * from './load.js';
