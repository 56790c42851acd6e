/**
 * The one place that writes a flat kernel's entry point: its builtins, the flat index over a 2-D grid of
 * workgroups (x first, then y once x would pass the per-dimension limit) and the bounds guard. `grid()` is the
 * matching dispatch geometry; the two must agree, so they live together.
 */

/** What `grid` needs of the engine (kept structural: this file knows no engine). */
export interface GridLimits {
  readonly limits: { readonly maxComputeWorkgroupsPerDimension: number };
}

/**
 * Workgroup grid for `items` invocations of workgroup size `wg`, split over x and y when x would exceed the
 * per-dimension limit. Kernels index as gid.x + gid.y·nwg.x·wg (what `flatMain` writes).
 */
export function grid(engine: GridLimits, items: number, wg: number): [number, number] {
  const groups = Math.ceil(items / wg);
  const max = engine.limits.maxComputeWorkgroupsPerDimension;
  if (groups <= max) return [Math.max(groups, 1), 1];
  const y = Math.ceil(groups / max);
  return [Math.ceil(groups / y), y];
}

export interface FlatMainOptions {
  /** Workgroup size along x: the flat index's row length (must equal the kernel's workgroupSize[0]). */
  wg: number;
  /** The count the index is guarded against, e.g. 'params.n'. */
  count: string;
  /** The body, run for index < count. */
  body: string;
  /** Name of the flat index (default 'i'). */
  index?: string;
  /** Extra builtin parameters, e.g. '@builtin(local_invocation_id) lid: vec3<u32>'. */
  builtins?: string;
  /** Statements before the guard (e.g. workgroup-shared loads that every invocation must reach). */
  prologue?: string;
}

/** `fn main` over a flat index laid out by `grid()`, with the bounds guard: the line written once. */
export function flatMain(o: FlatMainOptions): string {
  const i = o.index ?? 'i';
  const extra = o.builtins ? `, ${o.builtins}` : '';
  return `fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>${extra}) {
  let ${i} = gid.x + gid.y * nwg.x * ${o.wg}u;
${o.prologue ?? ''}  if (${i} >= ${o.count}) { return; }
${o.body}
}`;
}

export interface GroupMainOptions {
  /** Name of the item index (one workgroup per item). */
  index: string;
  /** The count the index is guarded against, e.g. 'params.rows'. */
  count: string;
  /** The body; `lid` is the invocation's index within its workgroup. */
  body: string;
}

/**
 * `fn main` with one workgroup per item, laid out by `grid(e, items, 1)`: the item index over x then y, and a guard
 * that exits whole workgroups (uniformly, so the body's barriers stay legal).
 */
export function groupMain(o: GroupMainOptions): string {
  return `fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let ${o.index} = wid.x + wid.y * nwg.x;
  if (${o.index} >= ${o.count}) { return; }
${o.body}
}`;
}
