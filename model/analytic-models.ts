/**
 * Score models with closed-form diffused scores and log-densities under the VP / sub-VP SDEs of SPEC §2, for
 * checking the likelihood machinery exactly:
 *   data class y: Σ_c w_yc·N(μ_yc, s²_yc·I)  ⇒  p_t(x|y) = Σ_c w_yc·N(x; m(t)μ_yc, v_yc(t)·I),
 *   v = m²s² + σ(t)², m = e^{−½∫β}, σ = the SDE's marginal std (VP: √(1 − m²); sub-VP: 1 − m²).
 * One component and no classes is the isotropic Gaussian of SPEC §3's analytic check.
 *
 * The GPU score is an autodiff op like the network's (mixture-ops.ts), so Hutchinson VJPs and forward-over-reverse
 * HVPs run through it unchanged; float64 host twins (log density, score, J·v, divergence, Bayes posterior) are the
 * references.
 */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { isTracing } from '../engine/autodiff.js';
import { SbgcError, ShapeError } from '../engine/errors.js';
import type { Labels, ScoreModel, Times } from './score.js';
import type { Sde } from './sde.js';
import { MAX_COMPONENTS_PER_CLASS, mixtureScore, type MixtureParams, type MixtureTables } from './mixture-ops.js';

export { MAX_COMPONENTS_PER_CLASS, mixtureJacobianVector, mixtureScore, type MixtureParams } from './mixture-ops.js';

const LOG_2PI = Math.log(2 * Math.PI);

export interface GaussianComponent {
  mean: ArrayLike<number>;
  /** s²: the isotropic variance of the component. */
  variance: number;
  /** Mixture weight within its class (normalised per class; default equal weights). */
  weight?: number;
}

export interface GaussianMixtureSpec {
  shape: [number, number, number];
  sde: Sde;
  /** Components of each class; every class has the same number of components. */
  classes: GaussianComponent[][];
  /** A class-conditional model (labels required); default: more than one class. */
  conditional?: boolean;
}

export class GaussianMixtureScoreModel implements ScoreModel, MixtureTables {
  readonly shape: [number, number, number];
  readonly numClasses: number;
  readonly sde: Sde;
  readonly dim: number;
  readonly componentsPerClass: number;
  /** Means [classes·K, D], normalised log weights and variances, float64. */
  readonly means: Float64Array;
  readonly logWeights: Float64Array;
  readonly variances: Float64Array;
  private readonly gpu = new Map<Engine, { means: Tensor; comp: Tensor }>();

  constructor(spec: GaussianMixtureSpec) {
    const [C, H, W] = spec.shape;
    this.shape = [C, H, W];
    this.dim = C * H * W;
    this.sde = spec.sde;
    const nc = spec.classes.length;
    if (nc < 1) throw new RangeError('GaussianMixtureScoreModel: at least one class');
    const K = spec.classes[0].length;
    if (!(K >= 1 && K <= MAX_COMPONENTS_PER_CLASS) || spec.classes.some((c) => c.length !== K)) {
      throw new RangeError(`GaussianMixtureScoreModel: every class needs the same 1..${MAX_COMPONENTS_PER_CLASS} components`);
    }
    const conditional = spec.conditional ?? nc > 1;
    if (!conditional && nc !== 1) throw new RangeError('GaussianMixtureScoreModel: an unconditional model has one class');
    this.numClasses = conditional ? nc : 0;
    this.componentsPerClass = K;
    this.means = new Float64Array(nc * K * this.dim);
    this.logWeights = new Float64Array(nc * K);
    this.variances = new Float64Array(nc * K);
    spec.classes.forEach((comps, y) => {
      const wsum = comps.reduce((a, c) => a + (c.weight ?? 1), 0);
      comps.forEach((c, k) => {
        const j = y * K + k;
        if (c.mean.length !== this.dim) throw new ShapeError(`class ${y} component ${k}: mean has ${c.mean.length} values, D = ${this.dim}`);
        if (!(c.variance > 0)) throw new RangeError(`class ${y} component ${k}: variance must be > 0, got ${c.variance}`);
        const w = c.weight ?? 1;
        if (!(w > 0)) throw new RangeError(`class ${y} component ${k}: weight must be > 0, got ${w}`);
        this.means.set(Array.from(c.mean), j * this.dim);
        this.logWeights[j] = Math.log(w / wsum);
        this.variances[j] = c.variance;
      });
    });
  }

  /** Classes the tables hold (1 for an unconditional model). */
  get tableClasses(): number {
    return Math.max(1, this.numClasses);
  }

  /** The GPU tables (uploaded once per engine): means [classes·K, D] and (log w, s²) per component. */
  tables(e: Engine): { means: Tensor; comp: Tensor } {
    let t = this.gpu.get(e);
    if (!t) {
      const comp = new Float32Array(2 * this.logWeights.length);
      this.logWeights.forEach((lw, j) => {
        comp[2 * j] = lw;
        comp[2 * j + 1] = this.variances[j];
      });
      t = {
        means: e.keep(e.tensor(Float32Array.from(this.means), [this.means.length / this.dim, this.dim], 'f32', 'mixture.means')),
        comp: e.keep(e.tensor(comp, [this.logWeights.length, 2], 'f32', 'mixture.components')),
      };
      this.gpu.set(e, t);
    }
    return t;
  }

  /** Releases the GPU tables. */
  dispose(): void {
    for (const t of this.gpu.values()) {
      t.means.dispose();
      t.comp.dispose();
    }
    this.gpu.clear();
  }

  /** m(t), σ(t)². */
  coefficients(t: number): { m: number; sigma2: number } {
    const s = this.sde.marginalStd(t);
    return { m: this.sde.meanCoefficient(t), sigma2: s * s };
  }

  private labelTensor(e: Engine, labels: Labels, batch: number, what: string): Tensor {
    if (this.numClasses === 0) {
      if (labels !== null) throw new SbgcError(`${what}: the model is unconditional; pass labels = null`);
      return e.tensor(new Uint32Array(batch), [batch], 'u32', 'mixture.labels');
    }
    if (labels === null) throw new SbgcError(`${what}: the model is class-conditional; labels are required`);
    if ('size' in labels) {
      labels.assertDType('u32', `${what} labels`);
      if (labels.size !== batch) throw new ShapeError(`${what}: ${labels.describe()} for a batch of ${batch}`);
      return labels;
    }
    if (labels.length !== batch) throw new ShapeError(`${what}: ${labels.length} labels for a batch of ${batch}`);
    for (let i = 0; i < batch; i++) {
      const y = labels[i];
      if (!(Number.isInteger(y) && y >= 0 && y < this.numClasses)) {
        throw new RangeError(`${what}: label ${i} is ${y}, outside [0, ${this.numClasses})`);
      }
    }
    return e.tensor(Uint32Array.from(labels), [batch], 'u32', 'mixture.labels');
  }

  private call(e: Engine, x: Tensor, t: Times, labels: Labels, epsilon: boolean, what: string): Tensor {
    x.assertShape([null, ...this.shape], `${what} x`);
    x.assertDType('f32', `${what} x`);
    const B = x.shape[0];
    if (t.length !== B) throw new ShapeError(`${what}: ${t.length} times for a batch of ${B}`);
    const rows = new Float32Array(3 * B);
    for (let b = 0; b < B; b++) {
      const tb = t[b];
      if (!(Number.isFinite(tb) && tb >= 0 && tb <= 1)) throw new SbgcError(`${what}: time ${b} is ${tb}, outside [0, 1]`);
      const { m, sigma2 } = this.coefficients(tb);
      rows[3 * b] = m;
      rows[3 * b + 1] = sigma2;
      rows[3 * b + 2] = epsilon ? -Math.sqrt(sigma2) : 1;
    }
    const params: MixtureParams = {
      model: this,
      rows: e.tensor(rows, [B, 3], 'f32', 'mixture.rows'),
      labels: this.labelTensor(e, labels, B, what),
    };
    const out = mixtureScore(e, [x], params);
    if (!isTracing()) {
      params.rows.dispose();
      if (params.labels !== labels) params.labels.dispose();
    }
    return out;
  }

  /** ∇ₓ log p_t(x|y) on the GPU, [B, C, H, W]; differentiable in x (VJP, JVP, HVP). */
  score(e: Engine, x: Tensor, t: Times, labels: Labels): Tensor {
    return this.call(e, x, t, labels, false, 'mixture.score');
  }

  /** The ε-prediction a network would output: −σ(t)·score. */
  epsilon(e: Engine, x: Tensor, t: Times, labels: Labels): Tensor {
    return this.call(e, x, t, labels, true, 'mixture.epsilon');
  }

  /** Per-component quantities of one sample in float64: r, u_c (as (mμ_c − x)/v_c), v_c. */
  private hostComponents(x: ArrayLike<number>, t: number, label: number | null) {
    const D = this.dim;
    if (x.length !== D) throw new ShapeError(`mixture: x has ${x.length} values, D = ${D}`);
    const y = this.numClasses === 0 ? 0 : (label ?? -1);
    if (!(Number.isInteger(y) && y >= 0 && y < this.tableClasses)) throw new RangeError(`mixture: label ${label} out of range`);
    const K = this.componentsPerClass;
    const { m, sigma2 } = this.coefficients(t);
    const logN = new Float64Array(K);
    const u: Float64Array[] = [];
    const v = new Float64Array(K);
    for (let c = 0; c < K; c++) {
      const j = y * K + c;
      v[c] = m * m * this.variances[j] + sigma2;
      const uc = new Float64Array(D);
      let sq = 0;
      for (let i = 0; i < D; i++) {
        const d = m * this.means[j * D + i] - x[i];
        sq += d * d;
        uc[i] = d / v[c];
      }
      u.push(uc);
      logN[c] = this.logWeights[j] - 0.5 * D * (LOG_2PI + Math.log(v[c])) - (0.5 * sq) / v[c];
    }
    const mx = Math.max(...logN);
    let z = 0;
    for (const l of logN) z += Math.exp(l - mx);
    const logp = mx + Math.log(z);
    const r = logN.map((l) => Math.exp(l - logp));
    return { r, u, v, logp };
  }

  /** Exact log p_t(x|y) in nats (float64). */
  logDensity(x: ArrayLike<number>, t: number, label: number | null = null): number {
    return this.hostComponents(x, t, label).logp;
  }

  /** Exact score in float64. */
  scoreHost(x: ArrayLike<number>, t: number, label: number | null = null): Float64Array {
    const { r, u } = this.hostComponents(x, t, label);
    const out = new Float64Array(this.dim);
    u.forEach((uc, c) => uc.forEach((ui, i) => (out[i] += r[c] * ui)));
    return out;
  }

  /** J·v in float64 (the Hessian of log p_t applied to v). */
  jacobianVectorHost(x: ArrayLike<number>, t: number, label: number | null, vec: ArrayLike<number>): Float64Array {
    const { r, u, v } = this.hostComponents(x, t, label);
    const D = this.dim;
    const alpha = u.map((uc) => uc.reduce((a, ui, i) => a + ui * vec[i], 0));
    const abar = alpha.reduce((a, al, c) => a + r[c] * al, 0);
    const A = r.reduce((a, rc, c) => a + rc / v[c], 0);
    const out = new Float64Array(D);
    for (let i = 0; i < D; i++) {
      let s = -A * vec[i];
      for (let c = 0; c < r.length; c++) s += r[c] * (alpha[c] - abar) * u[c][i];
      out[i] = s;
    }
    return out;
  }

  /** Exact divergence of the score, tr J = Σ_c r_c‖u_c‖² − ‖ū‖² − D·Σ_c r_c/v_c (float64). */
  scoreDivergenceHost(x: ArrayLike<number>, t: number, label: number | null = null): number {
    const { r, u, v } = this.hostComponents(x, t, label);
    const D = this.dim;
    const ubar = new Float64Array(D);
    let tr = 0;
    u.forEach((uc, c) => {
      let sq = 0;
      uc.forEach((ui, i) => {
        sq += ui * ui;
        ubar[i] += r[c] * ui;
      });
      tr += r[c] * (sq - D / v[c]);
    });
    return tr - ubar.reduce((a, ui) => a + ui * ui, 0);
  }

  /** Exact log p_t(x|y) for every class and the Bayes posterior p(y|x) ∝ p(y)·p_t(x|y) (uniform p(y) by default). */
  bayes(x: ArrayLike<number>, t: number, logPrior?: ArrayLike<number>): { logp: Float64Array; posterior: Float64Array; predicted: number } {
    const n = this.tableClasses;
    const logp = Float64Array.from({ length: n }, (_, y) => this.logDensity(x, t, this.numClasses === 0 ? null : y));
    const joint = logp.map((l, y) => l + (logPrior ? logPrior[y] : -Math.log(n)));
    const mx = Math.max(...joint);
    const z = joint.reduce((a, l) => a + Math.exp(l - mx), 0);
    const posterior = joint.map((l) => Math.exp(l - mx) / z);
    let predicted = 0;
    joint.forEach((l, y) => {
      if (l > joint[predicted]) predicted = y;
    });
    return { logp, posterior, predicted };
  }
}

/** Isotropic Gaussian data N(μ, s²I) (unconditional): p_t = N(mμ, (m²s² + σ²)I). */
export function isotropicGaussianModel(opts: {
  shape: [number, number, number];
  sde: Sde;
  mean: ArrayLike<number> | number;
  variance: number;
}): GaussianMixtureScoreModel {
  const D = opts.shape[0] * opts.shape[1] * opts.shape[2];
  const mean = typeof opts.mean === 'number' ? new Float64Array(D).fill(opts.mean) : opts.mean;
  return new GaussianMixtureScoreModel({ shape: opts.shape, sde: opts.sde, classes: [[{ mean, variance: opts.variance }]], conditional: false });
}

/** Class-conditional isotropic Gaussians: class y is N(μ_y, s_y²I). */
export function classConditionalGaussians(opts: {
  shape: [number, number, number];
  sde: Sde;
  means: ArrayLike<number>[];
  variances: number[] | number;
}): GaussianMixtureScoreModel {
  const classes = opts.means.map((mean, y) => [
    { mean, variance: typeof opts.variances === 'number' ? opts.variances : opts.variances[y] },
  ]);
  return new GaussianMixtureScoreModel({ shape: opts.shape, sde: opts.sde, classes, conditional: true });
}
