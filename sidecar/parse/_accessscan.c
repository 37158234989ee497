/*
 * sidecar.parse._accessscan: the response headers and read fields of an nginx access line, in C.
 *
 * scan(d: dict, keys: tuple[str, ...], slots: tuple[str | int | None, ...], nfields: int)
 *     -> tuple[dict[str, str], tuple[object, ...]] | None
 *
 * `keys` are the keys of a line layout in line order; `slots[i]` says what `keys[i]` is: the
 * header name of a `resp_<name>` key (str), the place of a field the parser reads (int, below
 * `nfields`), or None. When `d`'s keys are exactly `keys`, in that order, and every `resp_` value
 * is either falsy or a string other than "-", the result is
 *
 *   - the headers, as `_resp_headers(d, f)` in sidecar/parse/access.py gives them (noting no
 *     invalid field then): for each key in order, if it has a name and a truthy value,
 *     headers[name] = value (the later of two keys of one name wins, in the place of the first);
 *   - the fields: a tuple of `nfields` values, `d[keys[i]]` at place `slots[i]`, None elsewhere
 *     (what `tuple(map(d.get, _NGINX_KEYS))` gives).
 *
 * When the keys match but a `resp_` value is a number or any other truthy non-string, or a "-"
 * (which keeps an earlier value of its name), the result is (None, fields): the caller reads the
 * headers with its general loop (`_resp_headers`), once. A line of another layout returns None
 * and the caller takes its pure path (`_layout`, `_resp_headers_of`). One pass over the dict, no
 * hash lookups.
 *
 * scan_line(line: bytes, keys: tuple[bytes, ...] | None, slots, nfields: int, loads)
 *     -> tuple[dict[str, str], tuple[object, ...]] | None
 *
 * The same result read from the raw line, without building the line's dict: what
 * `scan(loads(line), ...)` gives when that is a pair of dict and tuple. `keys` are the layout's
 * keys encoded (printable ASCII without `"` or `\`; None: no raw read for this layout) and
 * `loads` is orjson.loads. The line must be exactly one flat JSON object whose keys are `keys`,
 * in order, unescaped, with JSON whitespace anywhere between tokens; its values:
 *
 *   - a string of printable ASCII without escapes: made here;
 *   - any other string (escapes, UTF-8, control bytes): `loads` of just that string's bytes, so
 *     its value (or its rejection) is orjson's own; a rejection returns None;
 *   - `-?(0|[1-9][0-9]*)`, at most 18 digits: an int; with a fraction `.[0-9]+` and no exponent,
 *     at most 32 characters: a float, correctly rounded (PyOS_string_to_double), as orjson reads
 *     it; any other number (exponent, longer, leading zero) returns None;
 *   - true, false, null.
 *
 * An object or array value, another layout, a `resp_` value that is not a string or is "-", any
 * other byte (trailing data, a byte order mark): None, and the caller parses the line with orjson
 * (`_loads`) and `scan`. Whatever this reads, orjson reads alike: it never decides a line's fate.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../_limits.h" /* TIME_MIN, TIME_MAX, DURATION_MAX_MS */
#include "../_round.h"

enum { OTHER = 0, OK = 1, FAIL = -1 }; /* a step's outcome: not this path, read, an exception */

/* A scan's fields (`nfields` Nones) and headers (an empty dict); -1 with an exception set. */
static int
start(Py_ssize_t nfields, PyObject **fields, PyObject **out)
{
    *fields = PyTuple_New(nfields);
    if (*fields == NULL)
        return -1;
    for (Py_ssize_t j = 0; j < nfields; j++) {
        Py_INCREF(Py_None);
        PyTuple_SET_ITEM(*fields, j, Py_None);
    }
    *out = PyDict_New();
    if (*out == NULL) {
        Py_DECREF(*fields);
        return -1;
    }
    return 0;
}

/* The place in the fields that an int slot names; -1 with an exception set. */
static Py_ssize_t
place_of(PyObject *slot, Py_ssize_t nfields)
{
    Py_ssize_t at = PyLong_AsSsize_t(slot);
    if (at == -1 && PyErr_Occurred())
        return -1;
    if (at < 0 || at >= nfields) {
        PyErr_SetString(PyExc_ValueError, "a field place out of range");
        return -1;
    }
    return at;
}

/* A scan's answer, dropping its references to `out` and `fields`: (headers, fields) when OK,
 * None when OTHER, NULL (an exception set) when FAIL. */
static PyObject *
finish(int status, PyObject *headers, PyObject *out, PyObject *fields)
{
    PyObject *result = NULL;
    if (status == OK)
        result = PyTuple_Pack(2, headers, fields);
    else if (status == OTHER)
        result = Py_NewRef(Py_None);
    Py_DECREF(out);
    Py_DECREF(fields);
    return result;
}

static PyObject *
scan(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *d, *keys, *slots;
    Py_ssize_t nfields;
    if (!PyArg_ParseTuple(args, "O!O!O!n:scan", &PyDict_Type, &d, &PyTuple_Type, &keys,
                          &PyTuple_Type, &slots, &nfields))
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(keys);
    if (PyTuple_GET_SIZE(slots) != n || nfields < 0) {
        PyErr_SetString(PyExc_ValueError, "keys and slots differ in length");
        return NULL;
    }
    if (PyDict_GET_SIZE(d) != n)
        Py_RETURN_NONE;
    PyObject *fields, *out;
    if (start(nfields, &fields, &out) < 0)
        return NULL;
    Py_ssize_t pos = 0, i = 0;
    int general = 0; /* a header value the caller's general loop reads */
    PyObject *k, *v;
    while (PyDict_Next(d, &pos, &k, &v)) {
        if (i >= n)
            goto other; /* never read past `keys` */
        PyObject *want = PyTuple_GET_ITEM(keys, i);
        if (k != want) {
            if (!PyUnicode_CheckExact(k) || !PyUnicode_CheckExact(want))
                goto other;
            int cmp = PyUnicode_Compare(k, want);
            if (cmp == -1 && PyErr_Occurred())
                goto fail;
            if (cmp != 0)
                goto other;
        }
        PyObject *slot = PyTuple_GET_ITEM(slots, i);
        i++;
        if (slot == Py_None)
            continue;
        if (PyLong_CheckExact(slot)) {
            Py_ssize_t at = place_of(slot, nfields);
            if (at < 0)
                goto fail;
            PyObject *old = PyTuple_GET_ITEM(fields, at);
            Py_INCREF(v);
            PyTuple_SET_ITEM(fields, at, v);
            Py_DECREF(old);
            continue;
        }
        if (PyUnicode_CheckExact(v)) {
            Py_ssize_t len = PyUnicode_GET_LENGTH(v);
            if (len == 0)
                continue; /* absent */
            if (len == 1 && PyUnicode_READ_CHAR(v, 0) == '-')
                general = 1;
            else if (!general && PyDict_SetItem(out, slot, v) < 0)
                goto fail;
            continue;
        }
        /* Values of a JSON object are built-in types: their truth runs no Python code. */
        int truth = PyObject_IsTrue(v);
        if (truth < 0)
            goto fail;
        if (truth)
            general = 1; /* a number or another type: the general loop converts or counts it */
    }
    if (i != n)
        goto other;
    return finish(OK, general ? Py_None : out, out, fields);
other:
    return finish(OTHER, NULL, out, fields);
fail:
    return finish(FAIL, NULL, out, fields);
}

/* ---------------------------------------------------------------- scan_line: the raw line */

static const char *
skip_ws(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* The bytes of the 8-byte word `w` (little-endian: byte i is bits 8i..8i+7) that read_string's
 * loop must look at: a quote, a backslash, a control byte (< 0x20) or one past 0x7e, flagged by
 * their high bit. Word-at-a-time bit tricks: the lowest flag is always exact (a borrow or carry
 * only moves up: a flag above a true one may be false), and none is missed. */
static inline uint64_t
specials(uint64_t w)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    const uint64_t q = w ^ (ones * '"'), b = w ^ (ones * '\\');
    const uint64_t zero_q = (q - ones) & ~q;       /* a byte == '"' */
    const uint64_t zero_b = (b - ones) & ~b;       /* a byte == '\\' */
    const uint64_t below = (w - ones * 0x20) & ~w; /* a byte < 0x20 */
    const uint64_t above = (w + ones) | w;          /* a byte >= 0x7f */
    return (zero_q | zero_b | below | above) & highs;
}

/* The string token at *pp (at its opening quote): its value in *out when `want` (a new
 * reference; else only checked), and *pp past its closing quote. */
static int
read_string(const char **pp, const char *e, int want, PyObject *loads, PyObject **out)
{
    const char *p = *pp + 1, *q = p;
    int plain = 1;
    /* Plain bytes (printable ASCII but quote and backslash: what the loop below passes over
     * without a change) 8 at a time, up to the first byte that is not (on a little-endian
     * machine; elsewhere up to its word). */
    while (e - q >= 8) {
        uint64_t w;
        memcpy(&w, q, 8); /* one unaligned load */
        uint64_t flags = specials(w);
        if (flags) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            q += __builtin_ctzll(flags) >> 3;
#endif
            break;
        }
        q += 8;
    }
    while (q < e) {
        unsigned char c = (unsigned char)*q;
        if (c == '"')
            break;
        if (c == '\\') {
            plain = 0;
            q += 2; /* the escaped byte cannot end the string */
            continue;
        }
        if (c < 0x20 || c > 0x7e)
            plain = 0;
        q++;
    }
    if (q >= e)
        return OTHER; /* no closing quote */
    *pp = q + 1;
    if (plain) {
        if (!want)
            return OK;
        Py_ssize_t len = q - p;
        PyObject *v = PyUnicode_New(len, 127);
        if (v == NULL)
            return FAIL;
        memcpy(PyUnicode_1BYTE_DATA(v), p, (size_t)len);
        *out = v;
        return OK;
    }
    /* Escapes, UTF-8 or control bytes: orjson reads the string token alone, as it would in the
     * line (its strings do not depend on what is around them). */
    PyObject *token = PyBytes_FromStringAndSize(p - 1, q - p + 2);
    if (token == NULL)
        return FAIL;
    PyObject *v = PyObject_CallOneArg(loads, token);
    Py_DECREF(token);
    if (v == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_ValueError))
            return FAIL; /* MemoryError and the like: not the line's fault */
        PyErr_Clear();
        return OTHER; /* refused: the caller's orjson.loads of the line decides */
    }
    if (!PyUnicode_CheckExact(v)) {
        Py_DECREF(v);
        return OTHER;
    }
    if (want)
        *out = v;
    else
        Py_DECREF(v);
    return OK;
}

/* The number token at *pp: an int (at most 18 digits) or a float with a fraction and no
 * exponent (at most 32 characters); anything else is OTHER. */
static int
read_number(const char **pp, const char *e, int want, PyObject **out)
{
    const char *start = *pp, *p = start;
    int neg = 0;
    if (p < e && *p == '-') {
        neg = 1;
        p++;
    }
    const char *digits = p;
    if (p < e && *p == '0')
        p++;
    else if (p < e && *p >= '1' && *p <= '9') {
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    }
    else
        return OTHER;
    Py_ssize_t ndigits = p - digits;
    int frac = 0;
    if (p < e && *p == '.') {
        frac = 1;
        p++;
        const char *f = p;
        while (p < e && *p >= '0' && *p <= '9')
            p++;
        if (p == f)
            return OTHER;
    }
    if (p < e && (*p == 'e' || *p == 'E'))
        return OTHER; /* an exponent: orjson's rules for range and rounding, not here */
    *pp = p;
    if (!frac) {
        if (ndigits > 18)
            return OTHER; /* orjson turns integers past 64 bits into floats */
        if (!want)
            return OK;
        long long v = 0;
        for (const char *d = digits; d < p; d++)
            v = v * 10 + (*d - '0');
        *out = PyLong_FromLongLong(neg ? -v : v); /* "-0" is the int 0, as orjson reads it */
        return *out == NULL ? FAIL : OK;
    }
    Py_ssize_t len = p - start;
    if (len > 32)
        return OTHER;
    if (!want)
        return OK;
    char buf[40];
    memcpy(buf, start, (size_t)len);
    buf[len] = '\0';
    char *end = NULL;
    double v = PyOS_string_to_double(buf, &end, NULL);
    if (v == -1.0 && PyErr_Occurred())
        return FAIL;
    if (end != buf + len || !isfinite(v))
        return OTHER;
    *out = PyFloat_FromDouble(v);
    return *out == NULL ? FAIL : OK;
}

/* The value at *pp: its object in *out when `want` (a new reference), else only checked. */
static int
read_value(const char **pp, const char *e, int want, PyObject *loads, PyObject **out)
{
    const char *p = *pp;
    if (p >= e)
        return OTHER;
    switch (*p) {
    case '"':
        return read_string(pp, e, want, loads, out);
    case 't':
    case 'f':
    case 'n': {
        const char *word = *p == 't' ? "true" : *p == 'f' ? "false" : "null";
        size_t len = strlen(word);
        if ((size_t)(e - p) < len || memcmp(p, word, len) != 0)
            return OTHER;
        *pp = p + len;
        if (want) {
            PyObject *v = *p == 't' ? Py_True : *p == 'f' ? Py_False : Py_None;
            Py_INCREF(v);
            *out = v;
        }
        return OK;
    }
    default:
        return read_number(pp, e, want, out);
    }
}

static PyObject *
scan_line(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "scan_line takes 5 arguments");
        return NULL;
    }
    PyObject *line = args[0], *keys = args[1], *slots = args[2], *loads = args[4];
    Py_ssize_t nfields = PyLong_AsSsize_t(args[3]);
    if (nfields == -1 && PyErr_Occurred())
        return NULL;
    if (!PyTuple_Check(slots) || nfields < 0) {
        PyErr_SetString(PyExc_TypeError, "slots must be a tuple, nfields >= 0");
        return NULL;
    }
    if (!PyBytes_CheckExact(line) || !PyTuple_Check(keys))
        Py_RETURN_NONE; /* not bytes, or a layout without a raw form: the general path */
    Py_ssize_t n = PyTuple_GET_SIZE(keys);
    if (PyTuple_GET_SIZE(slots) != n) {
        PyErr_SetString(PyExc_ValueError, "keys and slots differ in length");
        return NULL;
    }
    const char *p = PyBytes_AS_STRING(line);
    const char *e = p + PyBytes_GET_SIZE(line);
    PyObject *fields, *out;
    if (start(nfields, &fields, &out) < 0)
        return NULL;
    int r;
    p = skip_ws(p, e);
    if (p >= e || *p != '{')
        goto other;
    p = skip_ws(p + 1, e);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i > 0) {
            if (p >= e || *p != ',')
                goto other;
            p = skip_ws(p + 1, e);
        }
        PyObject *key = PyTuple_GET_ITEM(keys, i);
        if (!PyBytes_CheckExact(key)) {
            PyErr_SetString(PyExc_TypeError, "keys must be bytes");
            goto fail;
        }
        Py_ssize_t klen = PyBytes_GET_SIZE(key);
        if (e - p < klen + 2 || *p != '"' || p[klen + 1] != '"' ||
            memcmp(p + 1, PyBytes_AS_STRING(key), (size_t)klen) != 0)
            goto other; /* another key, or this key's prefix (its quote is not there) */
        p = skip_ws(p + klen + 2, e);
        if (p >= e || *p != ':')
            goto other;
        p = skip_ws(p + 1, e);
        PyObject *slot = PyTuple_GET_ITEM(slots, i);
        PyObject *v = NULL;
        if (slot == Py_None) {
            r = read_value(&p, e, 0, loads, &v);
        }
        else if (PyLong_CheckExact(slot)) {
            Py_ssize_t at = place_of(slot, nfields);
            if (at < 0)
                goto fail;
            r = read_value(&p, e, 1, loads, &v);
            if (r == OK) {
                PyObject *old = PyTuple_GET_ITEM(fields, at);
                PyTuple_SET_ITEM(fields, at, v); /* steals v */
                Py_DECREF(old);
            }
        }
        else {
            /* A header: a string only (anything else is for the general loop). */
            if (p >= e || *p != '"')
                goto other;
            if (p + 1 < e && p[1] == '"') {
                p += 2; /* "": absent */
                r = OK;
            }
            else {
                r = read_string(&p, e, 1, loads, &v);
                if (r == OK) {
                    if (PyUnicode_GET_LENGTH(v) == 1 && PyUnicode_READ_CHAR(v, 0) == '-') {
                        Py_DECREF(v);
                        goto other; /* "-" keeps an earlier value: the general loop */
                    }
                    int err = PyUnicode_GET_LENGTH(v) ? PyDict_SetItem(out, slot, v) : 0;
                    Py_DECREF(v);
                    if (err < 0)
                        goto fail;
                }
            }
        }
        if (r == FAIL)
            goto fail;
        if (r == OTHER)
            goto other;
        p = skip_ws(p, e);
    }
    if (p >= e || *p != '}')
        goto other;
    p = skip_ws(p + 1, e);
    if (p != e)
        goto other; /* trailing data */
    return finish(OK, out, out, fields);
other:
    return finish(OTHER, NULL, out, fields);
fail:
    return finish(FAIL, NULL, out, fields);
}

/* ------------------------------------------------------- record_args: the checked fields */

/* The places of `_NGINX_KEYS` (sidecar/parse/access.py) that record_args reads. */
enum {
    F_RID, F_TS, F_URI, F_PATH, F_STATUS, F_REQUEST_TIME, F_TTFT_MS, F_STREAM, F_RETRY,
    F_ATTEMPT, F_COMPLETION, F_EXTRA, F_RESPONSE_BODY, F_USAGE, F_REQUEST_BODY, F_TEXTS,
    F_KEY = F_TEXTS + 7, NKEYS
};

/* nginx's unset value: "" or "-" (fields._ABSENT). */
static int
absent_str(PyObject *v)
{
    if (!PyUnicode_CheckExact(v))
        return 0;
    Py_ssize_t len = PyUnicode_GET_LENGTH(v);
    return len == 0 || (len == 1 && PyUnicode_READ_CHAR(v, 0) == '-');
}

/* Fields.text of a string or None (a borrowed reference); NULL for any other type. */
static PyObject *
text_of(PyObject *v)
{
    if (v == Py_None || absent_str(v))
        return Py_None;
    return PyUnicode_CheckExact(v) ? v : NULL;
}

/* Fields.duration_ms of None or a float in range (a new reference); NULL, no exception, for
 * anything else; NULL with an exception set on failure (*failed). */
static PyObject *
duration_of(PyObject *v, double unit, int *failed)
{
    if (v == Py_None)
        return Py_NewRef(Py_None);
    if (!PyFloat_CheckExact(v))
        return NULL;
    double x = PyFloat_AS_DOUBLE(v);
    if (!(x >= 0.0 && x <= DURATION_MAX_MS / unit))
        return NULL;
    double r;
    if (sidecar_round(x * unit, 3, &r) < 0) {
        *failed = 1;
        return NULL;
    }
    PyObject *out = PyFloat_FromDouble(r);
    if (out == NULL)
        *failed = 1;
    return out;
}

/* Fields.count of what the parser passes it (`retry` unless absent, else `attempt`) when that
 * is absent or at most 15 ASCII digits (a new reference); NULL otherwise (*failed on failure). */
static PyObject *
count_of(PyObject *retry, PyObject *attempt, int *failed)
{
    PyObject *v = (retry == Py_None || absent_str(retry)) ? attempt : retry;
    if (v == Py_None || absent_str(v))
        return Py_NewRef(Py_None);
    if (!PyUnicode_CheckExact(v) || !PyUnicode_IS_ASCII(v))
        return NULL;
    Py_ssize_t len = PyUnicode_GET_LENGTH(v);
    if (len >= 16)
        return NULL;
    const char *s = (const char *)PyUnicode_1BYTE_DATA(v);
    long long n = 0;
    for (Py_ssize_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return NULL;
        n = n * 10 + (s[i] - '0');
    }
    PyObject *out = PyLong_FromLongLong(n);
    if (out == NULL)
        *failed = 1;
    return out;
}

/*
 * record_args(fields: tuple[object * 23], headers: dict) -> tuple[tuple, str | None] | None
 *
 * `fields` are an nginx line's values in the order of `_NGINX_KEYS` (what `_read` gives) and
 * `headers` its response headers, read without an invalid one. When every field is in its usual
 * form, the result is (args, key): `args` the 21 positional arguments of `AccessRecord` that
 * `parse_nginx_json`'s general steps (sidecar/parse/access.py, sidecar/parse/fields.py) give
 * without noting an invalid field (api_key_id None: `_finish` sets it), and `key` the raw API key
 * (`Fields.text` of it). The usual forms:
 *
 *   - request_id: a string other than "" and "-";
 *   - ts: None or a float in 0..TIME_MAX;
 *   - status: None or an int in 100..599;
 *   - request_time, ttft_ms: None or a float in 0..DURATION_MAX_MS (in ms), rounded as
 *     `Fields.duration_ms` rounds (sidecar/_round.h);
 *   - stream: None or a bool;
 *   - the attempt (`req_x_stainless_retry_count`, else `attempt`): absent or 1 to 15 ASCII digits;
 *   - response_headers: absent (None, "" or "-"); usage: absent or a dict;
 *   - request_completion: None or a string; every other field: None or a string.
 *
 * Anything else returns None and the caller takes the general steps, which decide (a bad value
 * nulled and named, a bad request id or time refused).
 */
static PyObject *
record_args(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 2 || !PyTuple_CheckExact(args[0]) || PyTuple_GET_SIZE(args[0]) != NKEYS ||
        !PyDict_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "record_args(tuple of 23 fields, dict)");
        return NULL;
    }
    PyObject *const *v = PySequence_Fast_ITEMS(args[0]); /* NKEYS items: checked above */
    PyObject *headers = args[1];

    PyObject *rid = v[F_RID];
    if (!PyUnicode_CheckExact(rid) || absent_str(rid))
        Py_RETURN_NONE; /* an int, or refused: `request_id` decides */
    PyObject *ts = v[F_TS];
    if (ts != Py_None) {
        if (!PyFloat_CheckExact(ts))
            Py_RETURN_NONE;
        double t = PyFloat_AS_DOUBLE(ts);
        if (!(TIME_MIN <= t && t <= TIME_MAX)) /* NaN: neither */
            Py_RETURN_NONE;
    }
    PyObject *uri = text_of(v[F_URI]), *path = text_of(v[F_PATH]);
    if (uri == NULL || path == NULL)
        Py_RETURN_NONE;
    if (uri != Py_None)
        path = uri; /* `text(uri) or text(path)`: a text is None or not empty */
    PyObject *status = v[F_STATUS];
    if (status != Py_None) {
        if (!PyLong_CheckExact(status))
            Py_RETURN_NONE;
        int overflow;
        long s = PyLong_AsLongAndOverflow(status, &overflow);
        if (overflow || s < 100 || s > 599)
            Py_RETURN_NONE; /* (-1 with an error cannot happen for an exact int) */
    }
    PyObject *stream = v[F_STREAM];
    if (stream != Py_None && !PyBool_Check(stream))
        Py_RETURN_NONE;
    PyObject *completion = v[F_COMPLETION];
    if (completion != Py_None && !PyUnicode_CheckExact(completion))
        Py_RETURN_NONE;
    PyObject *extra = v[F_EXTRA];
    if (extra != Py_None && !absent_str(extra))
        Py_RETURN_NONE;
    PyObject *usage = v[F_USAGE];
    if (absent_str(usage))
        usage = Py_None;
    else if (usage != Py_None && !PyDict_CheckExact(usage))
        Py_RETURN_NONE;
    PyObject *response_body = text_of(v[F_RESPONSE_BODY]);
    PyObject *request_body = text_of(v[F_REQUEST_BODY]);
    if (response_body == NULL || request_body == NULL)
        Py_RETURN_NONE;
    PyObject *texts[8]; /* method, upstream_host, model, user, tenant, conversation, client, key */
    for (int i = 0; i < 8; i++) {
        texts[i] = text_of(v[F_TEXTS + i]);
        if (texts[i] == NULL)
            Py_RETURN_NONE;
    }

    int failed = 0;
    PyObject *duration = duration_of(v[F_REQUEST_TIME], 1000.0, &failed);
    if (duration == NULL)
        return failed ? NULL : Py_NewRef(Py_None);
    PyObject *ttft = duration_of(v[F_TTFT_MS], 1.0, &failed);
    if (ttft == NULL) {
        Py_DECREF(duration);
        return failed ? NULL : Py_NewRef(Py_None);
    }
    PyObject *attempt = count_of(v[F_RETRY], v[F_ATTEMPT], &failed);
    if (attempt == NULL) {
        Py_DECREF(duration);
        Py_DECREF(ttft);
        return failed ? NULL : Py_NewRef(Py_None);
    }
    /* AccessRecord's fields in order (sidecar/types.py), up to request_body. */
    PyObject *rec = PyTuple_Pack(21, rid, ts, texts[0], path, status, duration, ttft, texts[1],
                                 stream, texts[2], texts[3], texts[4], Py_None, texts[5],
                                 texts[6], attempt, completion, headers, response_body, usage,
                                 request_body);
    Py_DECREF(duration);
    Py_DECREF(ttft);
    Py_DECREF(attempt);
    if (rec == NULL)
        return NULL;
    PyObject *result = PyTuple_Pack(2, rec, texts[7]);
    Py_DECREF(rec);
    return result;
}

/* round_to(x: float, ndigits: int) -> float: round(x, ndigits) for a float and 0 <= ndigits <= 6,
 * the same float (sidecar/_round.h), for Fields.duration_ms. */
static PyObject *
round_to(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 2 || !PyFloat_Check(args[0]) || !PyLong_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "round_to(float, int)");
        return NULL;
    }
    long nd = PyLong_AsLong(args[1]);
    if (nd == -1 && PyErr_Occurred())
        return NULL;
    if (nd < 0 || nd > 6) {
        PyErr_SetString(PyExc_ValueError, "0 <= ndigits <= 6");
        return NULL;
    }
    double out;
    if (sidecar_round(PyFloat_AS_DOUBLE(args[0]), (int)nd, &out) < 0)
        return NULL;
    return PyFloat_FromDouble(out);
}

static PyMethodDef methods[] = {
    {"round_to", (PyCFunction)(void (*)(void))round_to, METH_FASTCALL,
     "round(x, ndigits) of a float, 0 <= ndigits <= 6 (see the source)."},
    {"record_args", (PyCFunction)(void (*)(void))record_args, METH_FASTCALL,
     "AccessRecord's arguments and the raw key from a line's usual fields, or None (see the source)."},
    {"scan", scan, METH_VARARGS,
     "The response headers and fields of a line of a known key layout, or None (see the source)."},
    {"scan_line", (PyCFunction)(void (*)(void))scan_line, METH_FASTCALL,
     "scan's result read from the raw line, or None (see the source)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_accessscan", "The nginx access line's headers and fields, in C.", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__accessscan(void)
{
    return PyModule_Create(&module);
}
