/*
 * sidecar.enrich._ratelimit: the rate-limit fields of a response's usual headers, in C.
 *
 * limits(headers: dict, names: tuple[str * 8], kinds: bytes, keys: tuple[str * 9], now: float
 *        [, into: dict]) -> dict | None
 *
 * `names` are the limit, remaining and reset headers of the requests family, the same of the
 * tokens family, then `retry-after-ms` and `retry-after`; `kinds` (6 bytes) says how each of the
 * first six is read: 'c' a count, 'd' a Go duration (OpenAI), 'e' an RFC 3339 time (Anthropic,
 * given as seconds from `now`). The result is `parse_ratelimits`' dict (sidecar/enrich/
 * ratelimit.py, the pure twin), `keys` in order, when every header present is in its usual form:
 *
 *   - a count: 1 to 13 ASCII digits (int(value));
 *   - a duration: `<digits>[.<digits>]` then `ms`, `s`, `m` or `h`, at most 20 characters
 *     (round(float(number) * unit, 6));
 *   - a time: `YYYY-MM-DDTHH:MM:SSZ`, a valid date and time (its epoch seconds, exact), then
 *     round(max(0.0, at - now), 3);
 *   - no `retry-after-ms` nor `retry-after` (retry_after_secs None);
 *
 * the percentages as `_pct` gives them (an int quotient of two exact doubles is Python's own
 * int / int), and every value below 2^53. Anything else (another form, a value Python would
 * null, a retry header) returns None and the caller reads the headers in Python. Rounding is
 * float.__round__'s, exactly (sidecar/_round.h), so each number is the one Python computes.
 * With `into` (the event being built), the fields are set in it and it is returned; on None it
 * is left as it was.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#include "../_round.h"

enum { OTHER = 0, OK = 1, FAIL = -1 };

#define BOUND 9007199254740992.0 /* 2^53 */

/* The ASCII text of a str value, or NULL when it is not an exact ASCII str. */
static const char *
ascii_of(PyObject *v, Py_ssize_t *len)
{
    if (!PyUnicode_CheckExact(v) || !PyUnicode_IS_ASCII(v))
        return NULL;
    *len = PyUnicode_GET_LENGTH(v);
    return (const char *)PyUnicode_1BYTE_DATA(v);
}

static int
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int
read_count(PyObject *v, long long *out)
{
    Py_ssize_t len;
    const char *s = ascii_of(v, &len);
    if (s == NULL || len < 1 || len > 13)
        return OTHER;
    long long n = 0;
    for (Py_ssize_t i = 0; i < len; i++) {
        if (!is_digit(s[i]))
            return OTHER;
        n = n * 10 + (s[i] - '0');
    }
    *out = n;
    return OK;
}

static int
read_duration(PyObject *v, double *out)
{
    Py_ssize_t len;
    const char *s = ascii_of(v, &len);
    if (s == NULL || len < 2 || len > 20)
        return OTHER;
    Py_ssize_t i = 0;
    while (i < len && is_digit(s[i]))
        i++;
    if (i == 0)
        return OTHER;
    if (i < len && s[i] == '.') {
        Py_ssize_t f = ++i;
        while (i < len && is_digit(s[i]))
            i++;
        if (i == f)
            return OTHER;
    }
    Py_ssize_t nlen = i;
    double unit;
    Py_ssize_t rest = len - i;
    if (rest == 2 && s[i] == 'm' && s[i + 1] == 's')
        unit = 1e-3;
    else if (rest == 1 && s[i] == 's')
        unit = 1.0;
    else if (rest == 1 && s[i] == 'm')
        unit = 60.0;
    else if (rest == 1 && s[i] == 'h')
        unit = 3600.0;
    else
        return OTHER;
    char buf[24];
    memcpy(buf, s, (size_t)nlen);
    buf[nlen] = '\0';
    char *end = NULL;
    double number = PyOS_string_to_double(buf, &end, NULL);
    if (number == -1.0 && PyErr_Occurred())
        return FAIL;
    if (end != buf + nlen)
        return OTHER;
    if (sidecar_round(number * unit, 6, out) < 0)
        return FAIL;
    return *out < BOUND ? OK : OTHER; /* Python nulls a larger one */
}

static int
num2(const char *s)
{
    return (s[0] - '0') * 10 + (s[1] - '0');
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; H. Hinnant's days_from_civil). */
static long long
days_from_civil(long long y, long long m, long long d)
{
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    long long yoe = y - era * 400;
    long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int
read_time(PyObject *v, double now, double *out)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:ddZ";
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    Py_ssize_t len;
    const char *s = ascii_of(v, &len);
    if (s == NULL || len != 20)
        return OTHER;
    for (int i = 0; i < 20; i++) {
        if (shape[i] == 'd' ? !is_digit(s[i]) : s[i] != shape[i])
            return OTHER;
    }
    int year = num2(s) * 100 + num2(s + 2), month = num2(s + 5), day = num2(s + 8);
    int hour = num2(s + 11), minute = num2(s + 14), second = num2(s + 17);
    if (year < 1 || month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 ||
        second > 59)
        return OTHER;
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (day > mdays[month - 1] + (month == 2 && leap))
        return OTHER;
    long long epoch =
        days_from_civil(year, month, day) * 86400 + hour * 3600LL + minute * 60LL + second;
    double x = (double)epoch - now; /* exact epoch: below 2^38 */
    x = x > 0.0 ? x : 0.0;          /* max(0.0, x): 0.0 unless x is greater (NaN too) */
    if (sidecar_round(x, 3, out) < 0)
        return FAIL;
    return *out < BOUND ? OK : OTHER;
}

static int
put(PyObject *d, PyObject *key, PyObject *v)
{
    if (v == NULL)
        return -1;
    int r = PyDict_SetItem(d, key, v);
    Py_DECREF(v);
    return r;
}

static PyObject *
limits(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 5 && nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "limits takes 5 or 6 arguments");
        return NULL;
    }
    PyObject *headers = args[0], *names = args[1], *kinds = args[2], *keys = args[3];
    PyObject *into = nargs == 6 ? args[5] : NULL;
    if (!PyDict_Check(headers) || !PyTuple_Check(names) || PyTuple_GET_SIZE(names) != 8 ||
        !PyBytes_Check(kinds) || PyBytes_GET_SIZE(kinds) != 6 || !PyTuple_Check(keys) ||
        PyTuple_GET_SIZE(keys) != 9 || !PyFloat_CheckExact(args[4]) ||
        (into != NULL && !PyDict_CheckExact(into))) {
        PyErr_SetString(PyExc_TypeError, "limits(dict, 8 names, 6 kinds, 9 keys, float[, dict])");
        return NULL;
    }
    double now = PyFloat_AS_DOUBLE(args[4]);
    const char *kind = PyBytes_AS_STRING(kinds);
    for (int i = 6; i < 8; i++) {
        PyObject *v = PyDict_GetItemWithError(headers, PyTuple_GET_ITEM(names, i));
        if (v != NULL)
            Py_RETURN_NONE; /* a retry header: Python reads it */
        if (PyErr_Occurred())
            return NULL;
    }
    long long count[6];
    double number[6];
    int present[6];
    for (int i = 0; i < 6; i++) {
        PyObject *v = PyDict_GetItemWithError(headers, PyTuple_GET_ITEM(names, i));
        present[i] = v != NULL;
        if (v == NULL) {
            if (PyErr_Occurred())
                return NULL;
            continue;
        }
        int r;
        switch (kind[i]) {
        case 'c':
            r = read_count(v, &count[i]);
            break;
        case 'd':
            r = read_duration(v, &number[i]);
            break;
        case 'e':
            r = read_time(v, now, &number[i]);
            break;
        default:
            PyErr_SetString(PyExc_ValueError, "a kind is one of 'c', 'd', 'e'");
            return NULL;
        }
        if (r == FAIL)
            return NULL;
        if (r == OTHER)
            Py_RETURN_NONE;
    }
    /* the percentages: remaining * 100 / limit (exact doubles: Python's int / int) */
    double pct[2];
    int has_pct[2];
    for (int f = 0; f < 2; f++) {
        int lim = 3 * f, rem = 3 * f + 1;
        has_pct[f] = kind[lim] == 'c' && kind[rem] == 'c' && present[lim] && present[rem] &&
                     count[lim] > 0; /* else None, as `_pct` gives */
        if (!has_pct[f])
            continue;
        double p = (double)(count[rem] * 100) / (double)count[lim];
        p = p > 0.0 ? p : 0.0;     /* max(0.0, p) */
        p = p < 100.0 ? p : 100.0; /* min(100.0, p) */
        if (sidecar_round(p, 2, &pct[f]) < 0)
            return NULL;
    }
    PyObject *out = into != NULL ? Py_NewRef(into) : PyDict_New();
    if (out == NULL)
        return NULL;
    for (int i = 0; i < 6; i++) {
        PyObject *v;
        if (!present[i]) {
            v = Py_None;
            Py_INCREF(v);
        }
        else if (kind[i] == 'c')
            v = PyLong_FromLongLong(count[i]);
        else
            v = PyFloat_FromDouble(number[i]);
        if (put(out, PyTuple_GET_ITEM(keys, i), v) < 0)
            goto fail;
    }
    for (int f = 0; f < 2; f++) {
        PyObject *v = has_pct[f] ? PyFloat_FromDouble(pct[f]) : (Py_INCREF(Py_None), Py_None);
        if (put(out, PyTuple_GET_ITEM(keys, 6 + f), v) < 0)
            goto fail;
    }
    Py_INCREF(Py_None);
    if (put(out, PyTuple_GET_ITEM(keys, 8), Py_None) < 0)
        goto fail;
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

static PyMethodDef methods[] = {
    {"limits", (PyCFunction)(void (*)(void))limits, METH_FASTCALL,
     "The rate-limit fields of the usual header forms, or None (see the source)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_ratelimit", "Rate-limit headers to numbers, in C.", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__ratelimit(void)
{
    return PyModule_Create(&module);
}
