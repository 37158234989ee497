/*
 * sidecar.sources._splitlines: `block.split(b"\n")` with memchr.
 *
 * split_newlines(block: bytes[, start: int, end: int]) -> list[bytes], equal to
 * `block[start:end].split(b"\n")` for every block (the range read in place, not copied first):
 * the pieces between newlines in order, the piece after the last newline included (b"" when
 * the block ends with one). CPython's bytes.split looks at one byte at a time for a one-byte
 * separator; memchr looks at 32, which matters on the body log's 1 MiB blocks of ~400-byte
 * lines. Used by sidecar/sources/lines.py (`Lines.feed`, `LineBatch.lines`).
 *
 * count_lines(block: bytes, start: int, end: int) -> int, equal to
 * `len(block[start:end].split(b"\n"))` (`start`, `end` clamped as a slice's, both >= 0): the
 * number of lines of a batch cut from a block, without making them.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* The range [start, end) of `block` from `args` (block, [start, end]): 0, or -1 with an
 * exception set. `end` past the block's size is its size. */
static int
range_args(PyObject *const *args, Py_ssize_t nargs, int optional, const char *usage,
           Py_ssize_t *start, Py_ssize_t *end)
{
    if (!((nargs == 3) || (optional && nargs == 1)) || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, usage);
        return -1;
    }
    Py_ssize_t size = PyBytes_GET_SIZE(args[0]);
    *start = 0;
    *end = size;
    if (nargs == 1)
        return 0;
    *start = PyLong_AsSsize_t(args[1]);
    if (*start == -1 && PyErr_Occurred())
        return -1;
    *end = PyLong_AsSsize_t(args[2]);
    if (*end == -1 && PyErr_Occurred())
        return -1;
    if (*start < 0 || *end < 0) {
        PyErr_Format(PyExc_ValueError, "%s: negative start or end", usage);
        return -1;
    }
    if (*end > size)
        *end = size;
    if (*start > *end)
        *start = *end;
    return 0;
}

static PyObject *
split_newlines(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    Py_ssize_t a, b;
    if (range_args(args, nargs, 1, "split_newlines(block: bytes[, start: int, end: int])", &a,
                   &b) < 0)
        return NULL;
    const char *s = PyBytes_AS_STRING(args[0]) + a;
    const char *end = PyBytes_AS_STRING(args[0]) + b;
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    for (;;) {
        const char *nl = s < end ? memchr(s, '\n', (size_t)(end - s)) : NULL;
        const char *stop = nl != NULL ? nl : end; /* the last piece runs to the end */
        PyObject *piece = PyBytes_FromStringAndSize(s, stop - s);
        if (piece == NULL || PyList_Append(out, piece) < 0) {
            Py_XDECREF(piece);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(piece);
        if (nl == NULL)
            return out;
        s = nl + 1;
    }
}

static PyObject *
count_lines(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    Py_ssize_t start, end;
    if (range_args(args, nargs, 0, "count_lines(block: bytes, start: int, end: int)", &start,
                   &end) < 0)
        return NULL;
    Py_ssize_t n = 1;
    if (start < end) {
        const char *s = PyBytes_AS_STRING(args[0]) + start;
        const char *stop = PyBytes_AS_STRING(args[0]) + end;
        for (;;) {
            const char *nl = memchr(s, '\n', (size_t)(stop - s));
            if (nl == NULL)
                break;
            n++;
            s = nl + 1;
            if (s >= stop)
                break;
        }
    }
    return PyLong_FromSsize_t(n);
}

static PyMethodDef methods[] = {
    {"split_newlines", (PyCFunction)(void (*)(void))split_newlines, METH_FASTCALL,
     "split_newlines(block[, start, end]) -> list[bytes]: block[start:end].split(b'\\n'), "
     "with memchr, without copying the range first."},
    {"count_lines", (PyCFunction)(void (*)(void))count_lines, METH_FASTCALL,
     "count_lines(block, start, end) -> len(block[start:end].split(b'\\n'))."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "_splitlines",
    .m_doc = "A block's lines, cut with memchr (see sidecar/sources/lines.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__splitlines(void)
{
    return PyModule_Create(&module);
}
