// tanh for the OpenCL renderer's elementwise expressions (graphc/codegen/opencl.py).
//
// PoCL's built-in tanh is a scalar library call (about 14 ns an element on a Zen4 core,
// 6x the cost of exp) that also keeps the loop around it from vectorizing: an unrolled
// LSTM spent most of its step kernels in it. The float version here uses only arithmetic
// and one exp, so it vectorizes:
//   |x| < 0.25:  x * (the Taylor series of tanh(x) / x in x^2, 6 terms; error < 1e-10)
//   otherwise:   sign(x) (1 - e) / (1 + e), e = exp(-2|x|) (no cancellation past 0.25:
//                1 - e >= 0.39; within 3 ulp of tanh in float32 arithmetic)
// NaN stays NaN, +-inf give +-1, -0 gives -0. double keeps the built-in tanh (its full
// precision), compiled only for programs that call it (GRAPHC_TANH_DOUBLE, defined by
// codegen/opencl_renderer.py where the fp64 pragma is on).

inline float graphc_tanh_float(float x) {
    float a = fabs(x);
    float x2 = x * x;
    float series = x * (1.0f + x2 * (-3.333333333e-01f + x2 * (1.333333333e-01f
        + x2 * (-5.396825397e-02f + x2 * (2.186948854e-02f + x2 * (-8.863235530e-03f))))));
    float e = exp(-2.0f * a);
    float tail = copysign((1.0f - e) / (1.0f + e), x);
    return a < 0.25f ? series : tail;
}

#ifdef GRAPHC_TANH_DOUBLE
inline double graphc_tanh_double(double x) { return tanh(x); }
#endif
