/*
 * sidecar.join._bodylines: `BodyLines` of sidecar/join/bodylines.py in C, and the join's line
 * times of sidecar/join/pending.py: line_ts(line) and last_ts(part) (the time of a part's last
 * line), their twins `_line_ts_pure` and `_last_ts_pure` (see above `line_ts` below).
 *
 * BodyLines(chunks: list | tuple, n: int): the body-log lines of `chunks` (lines, and chunks:
 * several lines joined by b"\n" in one bytes object), n of them, as a read-only sequence:
 * len, indexes from both ends (negative too), slices (lists), iteration, reversed(), == with a
 * list or tuple, `lines()` (every line, a list) and `chunks` (a tuple). Exactly what the Python
 * class gives, read for read: lines are found by walking from the front (memchr) or the back
 * (memrchr), one per step, up to WALK from either end; any other read cuts every line once.
 * A bytes part is cut at its newlines only when it is exactly bytes (`type(x) is bytes`), as
 * there. The edges parse reads about a dozen lines per request through here: in C each read
 * costs a few dozen instructions instead of a Python call.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#include "../_limits.h" /* TIME_MIN, TIME_MAX */

#define WALK 64 /* as bodylines.py */

typedef struct {
    PyObject_HEAD
    PyObject *chunks; /* tuple */
    Py_ssize_t n;
    PyObject *all; /* list of every line, or NULL */
    PyObject *front; /* list: lines found from the front, in order */
    PyObject *back; /* list: lines found from the back, the last first */
    Py_ssize_t fat, fpos; /* the front walk's chunk and the offset of its next line */
    Py_ssize_t bat, bend; /* the back walk's chunk and the end of its next line (-1: its end) */
} BodyLines;

static PyTypeObject BodyLinesType;

static PyObject *
bl_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *chunks;
    Py_ssize_t n;
    static char *kwlist[] = {"chunks", "n", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "On:BodyLines", kwlist, &chunks, &n))
        return NULL;
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "BodyLines: n must be >= 0");
        return NULL;
    }
    PyObject *snap = PySequence_Tuple(chunks);
    if (snap == NULL)
        return NULL;
    BodyLines *self = (BodyLines *)type->tp_alloc(type, 0);
    if (self == NULL) {
        Py_DECREF(snap);
        return NULL;
    }
    self->chunks = snap;
    self->n = n;
    self->all = NULL;
    self->front = PyList_New(0);
    self->back = PyList_New(0);
    self->fat = self->fpos = 0;
    self->bat = PyTuple_GET_SIZE(snap) - 1;
    self->bend = -1;
    if (self->front == NULL || self->back == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int
bl_traverse(BodyLines *self, visitproc visit, void *arg)
{
    Py_VISIT(self->chunks);
    Py_VISIT(self->all);
    Py_VISIT(self->front);
    Py_VISIT(self->back);
    return 0;
}

static int
bl_clear(BodyLines *self)
{
    Py_CLEAR(self->chunks);
    Py_CLEAR(self->all);
    Py_CLEAR(self->front);
    Py_CLEAR(self->back);
    return 0;
}

static void
bl_dealloc(BodyLines *self)
{
    PyObject_GC_UnTrack(self);
    bl_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static Py_ssize_t
bl_len(BodyLines *self)
{
    return self->n;
}

/* Every line (cut once), a borrowed reference, or NULL. */
static PyObject *
bl_all(BodyLines *self)
{
    if (self->all != NULL)
        return self->all;
    if (self->chunks == NULL) {
        PyErr_SetString(PyExc_ValueError, "BodyLines: cleared");
        return NULL;
    }
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t c = 0; c < PyTuple_GET_SIZE(self->chunks); c++) {
        PyObject *chunk = PyTuple_GET_ITEM(self->chunks, c);
        if (!PyBytes_CheckExact(chunk)) {
            if (PyList_Append(out, chunk) < 0)
                goto fail;
            continue;
        }
        const char *s = PyBytes_AS_STRING(chunk);
        const char *end = s + PyBytes_GET_SIZE(chunk);
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        if (nl == NULL) { /* bytes.split gives the part itself */
            if (PyList_Append(out, chunk) < 0)
                goto fail;
            continue;
        }
        for (;;) {
            const char *stop = nl != NULL ? nl : end;
            PyObject *line = PyBytes_FromStringAndSize(s, stop - s);
            if (line == NULL)
                goto fail;
            int r = PyList_Append(out, line);
            Py_DECREF(line);
            if (r < 0)
                goto fail;
            if (nl == NULL)
                break;
            s = nl + 1;
            nl = s < end ? memchr(s, '\n', (size_t)(end - s)) : NULL;
        }
    }
    self->all = out;
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

/* The next line from the front (new reference), or NULL. */
static PyObject *
step_front(BodyLines *self)
{
    if (self->fat >= PyTuple_GET_SIZE(self->chunks)) {
        PyErr_SetString(PyExc_IndexError, "BodyLines: fewer lines than its length");
        return NULL;
    }
    PyObject *chunk = PyTuple_GET_ITEM(self->chunks, self->fat);
    PyObject *line;
    int done = 1; /* the chunk is used up */
    if (PyBytes_CheckExact(chunk)) {
        const char *s = PyBytes_AS_STRING(chunk);
        Py_ssize_t len = PyBytes_GET_SIZE(chunk), at = self->fpos;
        const char *nl = at < len ? memchr(s + at, '\n', (size_t)(len - at)) : NULL;
        if (nl != NULL) {
            line = PyBytes_FromStringAndSize(s + at, (nl - s) - at);
            self->fpos = (nl - s) + 1;
            done = 0;
        }
        else if (at == 0) {
            line = Py_NewRef(chunk);
        }
        else {
            line = PyBytes_FromStringAndSize(s + at, len - at);
        }
    }
    else {
        line = Py_NewRef(chunk);
    }
    if (line == NULL)
        return NULL;
    if (done) {
        self->fat++;
        self->fpos = 0;
    }
    if (PyList_Append(self->front, line) < 0) {
        Py_DECREF(line);
        return NULL;
    }
    return line;
}

/* The next line from the back (new reference), or NULL. */
static PyObject *
step_back(BodyLines *self)
{
    if (self->bat < 0 || self->bat >= PyTuple_GET_SIZE(self->chunks)) {
        PyErr_SetString(PyExc_IndexError, "BodyLines: fewer lines than its length");
        return NULL;
    }
    PyObject *chunk = PyTuple_GET_ITEM(self->chunks, self->bat);
    PyObject *line;
    int done = 1;
    if (PyBytes_CheckExact(chunk)) {
        const char *s = PyBytes_AS_STRING(chunk);
        Py_ssize_t len = PyBytes_GET_SIZE(chunk);
        Py_ssize_t end = self->bend < 0 ? len : self->bend;
        const char *nl = end > 0 ? memrchr(s, '\n', (size_t)end) : NULL;
        if (nl != NULL) {
            line = PyBytes_FromStringAndSize(nl + 1, end - ((nl - s) + 1));
            self->bend = nl - s;
            done = 0;
        }
        else if (end == len) {
            line = Py_NewRef(chunk);
        }
        else {
            line = PyBytes_FromStringAndSize(s, end);
        }
    }
    else {
        line = Py_NewRef(chunk);
    }
    if (line == NULL)
        return NULL;
    if (done) {
        self->bat--;
        self->bend = -1;
    }
    if (PyList_Append(self->back, line) < 0) {
        Py_DECREF(line);
        return NULL;
    }
    return line;
}

/* Line i, 0 <= i < n (new reference), or NULL. */
static PyObject *
line_at(BodyLines *self, Py_ssize_t i)
{
    if (self->chunks == NULL) {
        PyErr_SetString(PyExc_ValueError, "BodyLines: cleared");
        return NULL;
    }
    Py_ssize_t nf = PyList_GET_SIZE(self->front);
    if (i < nf)
        return Py_NewRef(PyList_GET_ITEM(self->front, i));
    Py_ssize_t k = self->n - 1 - i;
    Py_ssize_t nb = PyList_GET_SIZE(self->back);
    if (k < nb)
        return Py_NewRef(PyList_GET_ITEM(self->back, k));
    if (self->all == NULL) {
        if (i == nf && i < WALK)
            return step_front(self);
        if (k == nb && k < WALK)
            return step_back(self);
    }
    PyObject *all = bl_all(self);
    if (all == NULL)
        return NULL;
    if (i >= PyList_GET_SIZE(all)) {
        PyErr_SetString(PyExc_IndexError, "BodyLines: fewer lines than its length");
        return NULL;
    }
    return Py_NewRef(PyList_GET_ITEM(all, i));
}

static PyObject *
bl_item(BodyLines *self, Py_ssize_t i)
{
    if (i < 0 || i >= self->n) {
        PyErr_SetString(PyExc_IndexError, "body line index out of range");
        return NULL;
    }
    return line_at(self, i);
}

static PyObject *
bl_subscript(BodyLines *self, PyObject *key)
{
    if (PyIndex_Check(key)) {
        Py_ssize_t i = PyNumber_AsSsize_t(key, PyExc_IndexError);
        if (i == -1 && PyErr_Occurred())
            return NULL;
        if (i < 0)
            i += self->n;
        return bl_item(self, i);
    }
    if (!PySlice_Check(key)) {
        PyErr_Format(PyExc_TypeError, "BodyLines indices must be integers or slices, not %.200s",
                     Py_TYPE(key)->tp_name);
        return NULL;
    }
    Py_ssize_t start, stop, step;
    if (PySlice_Unpack(key, &start, &stop, &step) < 0)
        return NULL;
    Py_ssize_t count = PySlice_AdjustIndices(self->n, &start, &stop, step);
    if (step == 1) {
        if (stop <= PyList_GET_SIZE(self->front))
            return PyList_GetSlice(self->front, start, stop);
        Py_ssize_t nb = PyList_GET_SIZE(self->back);
        if (start >= self->n - nb) { /* all found from the back already, reversed */
            PyObject *out = PyList_New(count);
            if (out == NULL)
                return NULL;
            for (Py_ssize_t j = 0; j < count; j++) {
                PyObject *x = PyList_GET_ITEM(self->back, self->n - 1 - (start + j));
                PyList_SET_ITEM(out, j, Py_NewRef(x));
            }
            return out;
        }
    }
    PyObject *out = PyList_New(count);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t j = 0, i = start; j < count; j++, i += step) {
        PyObject *x = line_at(self, i);
        if (x == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, j, x);
    }
    return out;
}

static PyObject *
bl_iter(BodyLines *self)
{
    PyObject *all = bl_all(self);
    return all == NULL ? NULL : PyObject_GetIter(all);
}

static PyObject *
bl_lines(BodyLines *self, PyObject *unused)
{
    (void)unused;
    PyObject *all = bl_all(self);
    return all == NULL ? NULL : Py_NewRef(all);
}

static PyObject *
bl_get_chunks(BodyLines *self, void *closure)
{
    (void)closure;
    if (self->chunks == NULL) {
        PyErr_SetString(PyExc_ValueError, "BodyLines: cleared");
        return NULL;
    }
    return Py_NewRef(self->chunks);
}

static PyObject *
bl_richcompare(BodyLines *self, PyObject *other, int op)
{
    if ((op != Py_EQ && op != Py_NE) ||
        !(PyList_Check(other) || PyTuple_Check(other) || Py_IS_TYPE(other, &BodyLinesType)))
        Py_RETURN_NOTIMPLEMENTED;
    PyObject *mine = bl_all(self);
    if (mine == NULL)
        return NULL;
    PyObject *theirs = Py_IS_TYPE(other, &BodyLinesType) ? Py_XNewRef(bl_all((BodyLines *)other))
                                                          : PySequence_List(other);
    if (theirs == NULL)
        return NULL;
    PyObject *r = PyObject_RichCompare(mine, theirs, op);
    Py_DECREF(theirs);
    return r;
}

static PyObject *
bl_repr(BodyLines *self)
{
    return PyUnicode_FromFormat("BodyLines(%zd lines in %zd parts)", self->n,
                                self->chunks ? PyTuple_GET_SIZE(self->chunks) : (Py_ssize_t)0);
}

/* The length of line i as `len()` gives it, or -1 with the exception set. */
static Py_ssize_t
line_len(BodyLines *self, Py_ssize_t i)
{
    PyObject *line = line_at(self, i);
    if (line == NULL)
        return -1;
    Py_ssize_t len = PyBytes_CheckExact(line) ? PyBytes_GET_SIZE(line) : PyObject_Length(line);
    Py_DECREF(line);
    return len;
}

/* edges(head_bytes, tail_bytes): the head's lines (the first ones that reach head_bytes) and
   the tail's (the last ones that reach tail_bytes, never into the head), as one list; every
   line when the two meet. bodylines.py's `edges`, read for read. */
static PyObject *
bl_edges(BodyLines *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "edges: head_bytes and tail_bytes expected");
        return NULL;
    }
    /* integers (TypeError else), clamped: no line count reaches PY_SSIZE_T_MAX bytes */
    Py_ssize_t head_bytes = PyNumber_AsSsize_t(args[0], NULL);
    if (head_bytes == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t tail_bytes = PyNumber_AsSsize_t(args[1], NULL);
    if (tail_bytes == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t n = self->n, h = 0, t = n, size = 0, len;
    while (h < n && size < head_bytes) {
        if ((len = line_len(self, h)) < 0)
            return NULL;
        h++;
        if (len >= head_bytes - size) /* size + len reaches it (no overflow: size < head_bytes) */
            break;
        size += len;
    }
    size = 0;
    while (t > h && size < tail_bytes) {
        t--;
        if ((len = line_len(self, t)) < 0)
            return NULL;
        if (len >= tail_bytes - size)
            break;
        size += len;
    }
    if (t <= h) {
        PyObject *all = bl_all(self);
        return all == NULL ? NULL : PyList_GetSlice(all, 0, PyList_GET_SIZE(all));
    }
    PyObject *out = PyList_New(h + (n - t));
    if (out == NULL)
        return NULL;
    const Py_ssize_t from[2] = {0, t}, to[2] = {h, n}; /* lines [0, h) and [t, n) */
    Py_ssize_t j = 0;
    for (int r = 0; r < 2; r++) {
        for (Py_ssize_t i = from[r]; i < to[r]; i++) {
            PyObject *x = line_at(self, i); /* walked already: no new cut */
            if (x == NULL) {
                Py_DECREF(out);
                return NULL;
            }
            PyList_SET_ITEM(out, j++, x);
        }
    }
    return out;
}

static PyMethodDef bl_methods[] = {
    {"lines", (PyCFunction)bl_lines, METH_NOARGS, "Every line, as a list (cut once)."},
    {"edges", (PyCFunction)(void (*)(void))bl_edges, METH_FASTCALL,
     "The head's lines (reaching head_bytes) and the tail's (reaching tail_bytes), a list."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef bl_getset[] = {
    {"chunks", (getter)bl_get_chunks, NULL, "The lines and chunks as the join kept them.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods bl_as_sequence = {
    .sq_length = (lenfunc)bl_len,
    .sq_item = (ssizeargfunc)bl_item,
};

static PyMappingMethods bl_as_mapping = {
    .mp_length = (lenfunc)bl_len,
    .mp_subscript = (binaryfunc)bl_subscript,
};

static PyTypeObject BodyLinesType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sidecar.join._bodylines.BodyLines",
    .tp_doc = "A finished request's body-log lines over its chunks (see join/bodylines.py).",
    .tp_basicsize = sizeof(BodyLines),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_SEQUENCE,
    .tp_new = bl_new,
    .tp_dealloc = (destructor)bl_dealloc,
    .tp_traverse = (traverseproc)bl_traverse,
    .tp_clear = (inquiry)bl_clear,
    .tp_as_sequence = &bl_as_sequence,
    .tp_as_mapping = &bl_as_mapping,
    .tp_iter = (getiterfunc)bl_iter,
    .tp_richcompare = (richcmpfunc)bl_richcompare,
    .tp_hash = PyObject_HashNotImplemented,
    .tp_repr = (reprfunc)bl_repr,
    .tp_methods = bl_methods,
    .tp_getset = bl_getset,
};

/*
 * line_ts(line) and last_ts(part): `_line_ts_pure` and `_last_ts_pure` of
 * sidecar/join/pending.py, the time at the head of a canonical body-log line (`{"ts":T,...`),
 * read without a Python call per step (the join reads two or three per request).
 */
/* float(s[0:n]) as Python reads bytes, then the range check: a float, None, or NULL with an
   exception set (not a ValueError: that is None, as the twin's `except ValueError`). Digits
   and dots only (the usual) are read with the routine float() itself ends in; anything else
   (signs, spaces, underscores, inf, nan, ...) is given to float() itself. */
static PyObject *
time_of(const char *s, Py_ssize_t n)
{
    char buf[64];
    int plain = n > 0 && n < (Py_ssize_t)sizeof buf;
    for (Py_ssize_t i = 0; plain && i < n; i++)
        plain = (s[i] >= '0' && s[i] <= '9') || s[i] == '.';
    double t;
    if (plain) {
        memcpy(buf, s, (size_t)n);
        buf[n] = '\0';
        t = PyOS_string_to_double(buf, NULL, NULL); /* the whole string, or ValueError */
        if (t == -1.0 && PyErr_Occurred())
            goto failed;
    }
    else {
        PyObject *b = PyBytes_FromStringAndSize(s, n);
        if (b == NULL)
            return NULL;
        PyObject *f = PyFloat_FromString(b); /* float(b) */
        Py_DECREF(b);
        if (f == NULL)
            goto failed;
        t = PyFloat_AS_DOUBLE(f);
        Py_DECREF(f);
    }
    if (TIME_MIN <= t && t <= TIME_MAX) /* NaN: neither */
        return PyFloat_FromDouble(t);
    Py_RETURN_NONE;
failed:
    if (!PyErr_ExceptionMatches(PyExc_ValueError))
        return NULL;
    PyErr_Clear();
    Py_RETURN_NONE;
}

/* The time of the line that starts at s[start] (0 <= start <= n): line.startswith(b'{"ts":',
   start), then float(line[start + 6 : line.find(b",", start + 6)]) (no comma: -1, the slice
   ends before the last byte). */
static PyObject *
ts_at(const char *s, Py_ssize_t n, Py_ssize_t start)
{
    if (n - start < 6 || memcmp(s + start, "{\"ts\":", 6) != 0)
        Py_RETURN_NONE;
    Py_ssize_t a = start + 6;
    const char *comma = memchr(s + a, ',', (size_t)(n - a));
    Py_ssize_t stop = comma != NULL ? comma - s : n - 1;
    return time_of(s + a, stop > a ? stop - a : 0);
}

static PyObject *
line_ts(PyObject *module, PyObject *line)
{
    (void)module;
    if (!PyBytes_CheckExact(line)) /* type(line) is bytes */
        Py_RETURN_NONE;
    return ts_at(PyBytes_AS_STRING(line), PyBytes_GET_SIZE(line), 0);
}

static PyObject *
last_ts(PyObject *module, PyObject *part)
{
    (void)module;
    if (!PyBytes_CheckExact(part))
        Py_RETURN_NONE;
    const char *s = PyBytes_AS_STRING(part);
    Py_ssize_t n = PyBytes_GET_SIZE(part);
    const char *nl = n > 0 ? memrchr(s, '\n', (size_t)n) : NULL;
    return ts_at(s, n, nl != NULL ? nl - s + 1 : 0);
}

static PyMethodDef module_methods[] = {
    {"line_ts", line_ts, METH_O, "line_ts(line) -> float | None: pending.py's _line_ts_pure."},
    {"last_ts", last_ts, METH_O, "last_ts(part) -> float | None: pending.py's _last_ts_pure."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "_bodylines",
    .m_doc = "BodyLines of sidecar/join/bodylines.py, and the join's line times, in C.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__bodylines(void)
{
    if (PyType_Ready(&BodyLinesType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "BodyLines", (PyObject *)&BodyLinesType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
