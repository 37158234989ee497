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
 * Anything else returns None and the caller takes its pure path (`_layout`, `_resp_headers_of`,
 * which fall back to the general loop): a line of another layout, a number or any other truthy
 * non-string header value, a "-" (which keeps an earlier value of its name). One pass over the
 * dict, no hash lookups.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

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
    PyObject *fields = PyTuple_New(nfields);
    if (fields == NULL)
        return NULL;
    for (Py_ssize_t j = 0; j < nfields; j++) {
        Py_INCREF(Py_None);
        PyTuple_SET_ITEM(fields, j, Py_None);
    }
    PyObject *out = PyDict_New();
    if (out == NULL) {
        Py_DECREF(fields);
        return NULL;
    }
    Py_ssize_t pos = 0, i = 0;
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
            Py_ssize_t at = PyLong_AsSsize_t(slot);
            if (at == -1 && PyErr_Occurred())
                goto fail;
            if (at < 0 || at >= nfields) {
                PyErr_SetString(PyExc_ValueError, "a field place out of range");
                goto fail;
            }
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
                goto other;
            if (PyDict_SetItem(out, slot, v) < 0)
                goto fail;
            continue;
        }
        /* Values of a JSON object are built-in types: their truth runs no Python code. */
        int truth = PyObject_IsTrue(v);
        if (truth < 0)
            goto fail;
        if (truth)
            goto other; /* a number or another type: the general loop converts or counts it */
    }
    if (i != n)
        goto other;
    PyObject *result = PyTuple_Pack(2, out, fields);
    Py_DECREF(out);
    Py_DECREF(fields);
    return result;
other:
    Py_DECREF(out);
    Py_DECREF(fields);
    Py_RETURN_NONE;
fail:
    Py_DECREF(out);
    Py_DECREF(fields);
    return NULL;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS,
     "The response headers and fields of a line of a known key layout, or None (see the source)."},
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
