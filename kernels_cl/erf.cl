// erf for the elementwise template "graphc_erf_{T}(x)" (graphc/ops/elementwise.py).
//
// PoCL's built-in erf is a scalar library call (about 90 ns an element on a Zen4 core,
// 40x the cost of exp) that also keeps the loop around it from vectorizing. The float
// version here uses only arithmetic and one exp, so it vectorizes:
//   |x| < 0.5:  x * (the Taylor series of erf(x) / x in x^2, 7 terms; error < 1e-9)
//   otherwise:  1 - erfc(|x|), erfc(a) = t exp(-a^2 + P(t)), t = 1 / (1 + a / 2), P of
//               degree 9 fitted by least squares to log(erfc(a) exp(a^2) / t) on
//               [0.5, 10] (relative error of erfc < 3e-9 in exact arithmetic)
// which is within 2e-7 of erf in float32 arithmetic (float16 is computed in float, so it
// calls this one too). double keeps the built-in erf (its full precision), compiled only
// for programs that call it (graphc/codegen/opencl.py defines GRAPHC_ERF_DOUBLE), where
// the fp64 pragma is on.

inline float graphc_erf_float(float x) {
    float a = fabs(x);
    float x2 = x * x;
    float series = x * (1.128379167e+00f + x2 * (-3.761263890e-01f + x2 * (1.128379167e-01f
        + x2 * (-2.686617065e-02f + x2 * (5.223977625e-03f + x2 * (-8.548327023e-04f
        + x2 * (1.205533298e-04f)))))));
    float t = 1.0f / (1.0f + 0.5f * a);
    float p = -1.265538008e+00f + t * (1.000751055e+00f + t * (3.655017888e-01f
        + t * (1.521340481e-01f + t * (-4.008021924e-01f + t * (7.997348159e-01f
        + t * (-1.932325716e+00f + t * (2.234537713e+00f + t * (-1.211861636e+00f
        + t * (2.579018026e-01f)))))))));
    float tail = copysign(1.0f - t * exp(p - a * a), x);
    return a < 0.5f ? series : tail;
}

#ifdef GRAPHC_ERF_DOUBLE
inline double graphc_erf_double(double x) { return erf(x); }
#endif
