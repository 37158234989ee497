/*
 * sidecar/_round.h: round(x, ndigits) exactly as Python's float.__round__ gives it, shared by the
 * C extensions that round (sidecar/parse/_accessscan.c, sidecar/enrich/_ratelimit.c).
 */
#ifndef SIDECAR_ROUND_H
#define SIDECAR_ROUND_H

#include <Python.h>
#include <math.h>

static const double SIDECAR_POW10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6};

/* round(x, nd) as float.__round__ gives it (the exact value of x rounded half-even to nd
 * decimals, then the double nearest that decimal), without its decimal strings, for x == 0 or
 * 1e-10 <= x with x * 10^nd < 2^52 (0 <= nd <= 6): returns 1 and sets *out; 0 elsewhere.
 * x * s is hi + lo exactly (fma), and the fraction of hi is exact, so comparing it with 0.5 (lo
 * breaking a tie of hi) decides as the exact value would; m / s is the correctly rounded
 * quotient of two exact doubles, i.e. the double nearest the decimal. */
static int
sidecar_fast_round(double x, int nd, double *out)
{
    if (nd < 0 || nd > 6)
        return 0;
    if (x == 0.0) {
        *out = x; /* keeps the sign, as round(-0.0, n) does */
        return 1;
    }
    if (!(x >= 1e-10))
        return 0; /* NaN, negative, tiny */
    double s = SIDECAR_POW10[nd];
    double hi = x * s;
    if (!(hi < 4503599627370496.0)) /* 2^52 */
        return 0;
    double lo = fma(x, s, -hi); /* x * s - hi, exactly */
    double f = floor(hi);
    double t = (hi - f) - 0.5; /* exact: its sign and zero are the fraction's */
    double m = f;
    if (t > 0.0 || (t == 0.0 && lo > 0.0))
        m = f + 1.0;
    else if (t == 0.0 && lo == 0.0 && fmod(f, 2.0) != 0.0)
        m = f + 1.0; /* an exact tie: to even */
    *out = m / s;
    return 1;
}

/* round(x, nd) into *out: sidecar_fast_round, else a call of float.__round__ itself. Returns 0,
 * or -1 with an exception set (float.__round__'s OverflowError). */
static int
sidecar_round(double x, int nd, double *out)
{
    if (sidecar_fast_round(x, nd, out))
        return 0;
    PyObject *f = PyFloat_FromDouble(x);
    if (f == NULL)
        return -1;
    PyObject *r = PyObject_CallMethod(f, "__round__", "i", nd);
    Py_DECREF(f);
    if (r == NULL)
        return -1;
    *out = PyFloat_AsDouble(r);
    Py_DECREF(r);
    return *out == -1.0 && PyErr_Occurred() ? -1 : 0;
}

#endif
