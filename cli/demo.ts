/**
 * The main job on the bundled default. Until the bundled MNIST classifier exists, it prints the adapter and runs
 * the kernel smoke check.
 */
import { smokeCommand } from './smoke.js';

export async function demoCommand(): Promise<boolean> {
  console.log('sbgc demo: the bundled MNIST classifier is not built yet; running the kernel smoke check.');
  return smokeCommand();
}
