/**
 * Correctly rounded pow for the step-size factors (why: see below). Computed in double-double.
 */

// Why a correctly rounded pow:
//
// The error estimate h·Σ EⱼKⱼ is a heavily cancelling sum: a 1-ulp change anywhere (e.g. in a step factor) moves
// the next error norm by ~eps·|hK|/|err| (up to 1e-6 relative at rtol 1e-10), and the step sequences drift apart.
// V8's `**` differs from glibc's pow (which scipy gets) in ~10 % of the calls err^(−1/5); glibc is nearly always
// correctly rounded (measured: 1 in 2000 differs), so a correctly rounded pow is the closest match we can make.
// Computed in double-double (Dekker/Knuth error-free transformations; no FMA in JS).

type DD = readonly [number, number];
const SPLITTER = 134217729; // 2^27 + 1

function twoSum(a: number, b: number): DD {
  const s = a + b;
  const bb = s - a;
  return [s, a - (s - bb) + (b - bb)];
}
/** Requires |a| ≥ |b|. */
function fastTwoSum(a: number, b: number): DD {
  const s = a + b;
  return [s, b - (s - a)];
}
function twoProd(a: number, b: number): DD {
  const p = a * b;
  let c = SPLITTER * a;
  const ah = c - (c - a);
  const al = a - ah;
  c = SPLITTER * b;
  const bh = c - (c - b);
  const bl = b - bh;
  return [p, ah * bh - p + ah * bl + al * bh + al * bl];
}
function ddAdd(a: DD, b: DD): DD {
  const s = twoSum(a[0], b[0]);
  const t = twoSum(a[1], b[1]);
  const u = fastTwoSum(s[0], s[1] + t[0]);
  return fastTwoSum(u[0], u[1] + t[1]);
}
function ddMul(a: DD, b: DD): DD {
  const p = twoProd(a[0], b[0]);
  return fastTwoSum(p[0], p[1] + (a[0] * b[1] + a[1] * b[0]));
}
function ddMulD(a: DD, b: number): DD {
  const p = twoProd(a[0], b);
  return fastTwoSum(p[0], p[1] + a[1] * b);
}
function ddDivD(a: DD, b: number): DD {
  const q1 = a[0] / b;
  const p = twoProd(q1, b);
  return fastTwoSum(q1, (a[0] - p[0] - p[1] + a[1]) / b);
}

const LN2_DD: DD = [0.6931471805599453, 2.3190468138462996e-17];
/** 1/i! as double-doubles, i = 0..9. */
const INV_FACT: DD[] = (() => {
  const out: DD[] = [[1, 0]];
  let f = 1;
  for (let i = 1; i <= 9; i++) {
    f *= i;
    out.push(ddDivD([1, 0], f));
  }
  return out;
})();

/** 2^k exactly, for −1022 ≤ k ≤ 1023. */
function pow2(k: number): number {
  const b = new DataView(new ArrayBuffer(8));
  b.setUint32(0, (k + 1023) << 20);
  return b.getFloat64(0);
}

/** exp of a double-double, |a| ≤ ~700; relative error ~1e-30. */
function expDD(a: DD): DD {
  const k = Math.round(a[0] / LN2_DD[0]);
  const kl = twoProd(k, LN2_DD[0]);
  let r = ddAdd(a, [-kl[0], -kl[1]]);
  r = ddAdd(r, [-k * LN2_DD[1], 0]);
  // exp(r) = (exp(r/1024))^1024, with expm1 kept through the squarings so that nothing cancels.
  r = [r[0] / 1024, r[1] / 1024];
  let p: DD = INV_FACT[9];
  for (let i = 8; i >= 1; i--) p = ddAdd(ddMul(p, r), INV_FACT[i]);
  let m = ddMul(p, r);
  for (let i = 0; i < 10; i++) m = ddAdd([2 * m[0], 2 * m[1]], ddMul(m, m));
  const res = ddAdd([1, 0], m);
  const s = pow2(k);
  return [res[0] * s, res[1] * s];
}

/** x^e correctly rounded (to ~1e-14 ulp of a midpoint) for finite x > 0; other cases as `**`. */
export function powCorrectlyRounded(x: number, e: number): number {
  if (!(x > 0) || !Number.isFinite(x) || !Number.isFinite(e) || e === 0 || x === 1) return x ** e;
  const l0 = Math.log(x);
  // ln x = l0 + ln(1 + δ) with δ = x·e^(−l0) − 1 ~ 1e-16, so ln(1 + δ) = δ − δ²/2 to far below the ulp of ln x.
  const d = ddAdd(ddMulD(expDD([-l0, 0]), x), [-1, 0]);
  const ln = ddAdd([l0, 0], ddAdd(d, [-0.5 * d[0] * d[0], 0]));
  const y = ddMulD(ln, e);
  if (!(Math.abs(y[0]) < 700)) return x ** e;
  return expDD(y)[0];
}
