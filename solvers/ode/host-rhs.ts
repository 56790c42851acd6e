/** The right-hand side of a host float64 ODE. */

/** Right-hand side: write f(t, y) into `out`. `y` belongs to the solver: read it, never keep or modify it. */
export type OdeRhs = (t: number, y: Float64Array, out: Float64Array) => void | Promise<void>;

/**
 * The host right-hand side of a batch of rows: write f(t_b, y_b) for every row b of y ([rows, dim], row-major)
 * into `out`. `t` holds one time per row. Rows not being integrated are passed with their last state.
 */
export type HostBatchRhs = (t: Float64Array, y: Float64Array, out: Float64Array) => void | Promise<void>;
