/*
 * sidecar.parse._bodyscan: the per-line loops of the body log's fast path, in C.
 *
 * group_chunk_lines: a batch of lines grouped by request id (below); join_escaped: a request's
 * parts cut and joined into one JSON string (further down).
 *
 * group_chunk_lines(lines: list[bytes]) -> (dict[str, list[bytes]], list[bytes]) | None
 *
 * Exactly `_group_pure` in sidecar/parse/body.py, without a Python call per line:
 *
 *   for line in lines:
 *       k = line.find(b',"request_id":"') + 15
 *       e = line.find(b'","data":"', k)
 *       if k > 15 and e > k and line.endswith(b'"}'):  groups[line[k:e]].append(line)
 *       else:                                          odd.append(line)
 *   then every id must be ASCII without '"' or '\\', else None (the caller's per-line path);
 *   the ids become str keys, in first-seen order.
 *
 * The lines are kept as they are (same objects, no copy). Lines may be anything: every search
 * stays inside the line, and any failure to allocate returns NULL with the exception set.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static const char RID_KEY[] = ",\"request_id\":\""; /* 15 bytes, as body.py's _RID */
static const char DATA_KEY[] = "\",\"data\":\"";    /* 10 bytes, as body.py's _DATA */
#define RID_LEN 15
#define DATA_LEN 10

/* bytes.find(needle, from) on s[0:n]: the first position >= from, or -1. */
static Py_ssize_t
find(const char *s, Py_ssize_t n, Py_ssize_t from, const char *needle, Py_ssize_t m)
{
    if (from < 0 || n - m < from)
        return -1;
    const char *p = s + from;
    const char *last = s + (n - m); /* the last place the needle can start */
    while (p <= last) {
        p = memchr(p, needle[0], (size_t)(last - p) + 1);
        if (p == NULL)
            return -1;
        if (memcmp(p + 1, needle + 1, (size_t)m - 1) == 0)
            return p - s;
        p++;
    }
    return -1;
}

/* rid.isascii(): 8 bytes at a time (memcpy: no unaligned load), then the rest. */
static int
is_ascii(const char *s, Py_ssize_t n)
{
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        if (w & 0x8080808080808080ULL)
            return 0;
    }
    for (; i < n; i++) {
        if ((unsigned char)s[i] >= 0x80)
            return 0;
    }
    return 1;
}

static PyObject *
group_chunk_lines(PyObject *module, PyObject *lines)
{
    (void)module;
    if (!PyList_Check(lines)) {
        PyErr_SetString(PyExc_TypeError, "group_chunk_lines: a list of bytes expected");
        return NULL;
    }
    PyObject *groups = PyDict_New();
    PyObject *odd = PyList_New(0);
    if (groups == NULL || odd == NULL)
        goto fail;

    /* The previous grouped line's id and list: consecutive lines of one request skip the
       dict. `prev` points into a line that `groups` holds, so it stays valid. */
    const char *prev = NULL;
    Py_ssize_t prev_len = 0;
    PyObject *prev_list = NULL; /* borrowed from groups */

    /* The list is read again at every step (its size may not change, but be safe). */
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(lines); i++) {
        PyObject *line = PyList_GET_ITEM(lines, i);
        if (!PyBytes_Check(line)) {
            PyErr_Format(PyExc_TypeError, "group_chunk_lines: line %zd is not bytes", i);
            goto fail;
        }
        const char *s = PyBytes_AS_STRING(line);
        Py_ssize_t n = PyBytes_GET_SIZE(line);
        /* k = line.find(RID) + 15; e = line.find(DATA, k); k > 15 and e > k and '"}' */
        Py_ssize_t j = find(s, n, 0, RID_KEY, RID_LEN);
        Py_ssize_t k = j + RID_LEN;
        Py_ssize_t e = j > 0 ? find(s, n, k, DATA_KEY, DATA_LEN) : -1;
        if (!(j > 0 && e > k && s[n - 1] == '}' && s[n - 2] == '"')) {
            if (PyList_Append(odd, line) < 0)
                goto fail;
            continue;
        }
        const char *rid = s + k;
        Py_ssize_t rid_len = e - k;
        PyObject *list = NULL;
        if (prev != NULL && rid_len == prev_len && memcmp(rid, prev, (size_t)rid_len) == 0) {
            list = prev_list;
        }
        else {
            /* The Python path's per-id check (plain ASCII, no quote, no backslash), which
               sends the batch to the per-line path: None. ASCII is checked on every line,
               before the id becomes an ASCII str; the rest once per new id, below. */
            if (!is_ascii(rid, rid_len))
                goto not_plain;
            /* rid.decode("ascii") as the key: a compact ASCII str, filled in place. A Python
               dict keeps its randomized string hash: ids made to collide cost no more. */
            PyObject *key = PyUnicode_New(rid_len, 127);
            if (key == NULL)
                goto fail;
            memcpy(PyUnicode_1BYTE_DATA(key), rid, (size_t)rid_len);
            list = PyDict_GetItemWithError(groups, key); /* borrowed */
            if (list == NULL) {
                if (!PyErr_Occurred() && (memchr(rid, '"', (size_t)rid_len) != NULL ||
                                          memchr(rid, '\\', (size_t)rid_len) != NULL)) {
                    Py_DECREF(key);
                    goto not_plain;
                }
                if (PyErr_Occurred() || (list = PyList_New(0)) == NULL) {
                    Py_DECREF(key);
                    goto fail;
                }
                int r = PyDict_SetItem(groups, key, list);
                Py_DECREF(list); /* groups holds it now (or failed) */
                if (r < 0) {
                    Py_DECREF(key);
                    goto fail;
                }
            }
            Py_DECREF(key);
            prev = rid;
            prev_len = rid_len;
            prev_list = list;
        }
        if (PyList_Append(list, line) < 0)
            goto fail;
    }
    PyObject *out = PyTuple_Pack(2, groups, odd);
    Py_DECREF(groups);
    Py_DECREF(odd);
    return out;

not_plain:
    Py_DECREF(groups);
    Py_DECREF(odd);
    Py_RETURN_NONE;

fail:
    Py_XDECREF(groups);
    Py_XDECREF(odd);
    return NULL;
}

/* A part's escaped `data`, as assemble_escaped's pure twin cuts it: p[p.find(DATA) + 10 : -2]
   (Python's slice rules: an end before the start is empty, -2 on a short part is 0). */
static void
data_span(PyObject *part, const char **start, Py_ssize_t *len)
{
    const char *s = PyBytes_AS_STRING(part);
    Py_ssize_t n = PyBytes_GET_SIZE(part);
    Py_ssize_t a = find(s, n, 0, DATA_KEY, DATA_LEN) + DATA_LEN;
    Py_ssize_t b = n >= 2 ? n - 2 : 0;
    *start = s + a;
    *len = b > a ? b - a : 0;
}

/*
 * join_escaped(parts) -> bytes: b'"' + b"".join(p[p.find(DATA) + 10 : -2] for p in parts) + b'"'
 *
 * `_join_escaped_pure` in sidecar/parse/body.py: a request's body, still JSON-escaped, as one
 * JSON string for one orjson.loads, without a slice (a copy) per part. Two passes over a tuple
 * snapshot of `parts` (lengths, then copies): nothing can change it in between.
 */
static PyObject *
join_escaped(PyObject *module, PyObject *parts)
{
    (void)module;
    PyObject *snap = PySequence_Tuple(parts);
    if (snap == NULL)
        return NULL;
    Py_ssize_t count = PyTuple_GET_SIZE(snap);
    Py_ssize_t total = 2; /* the two quotes */
    const char *start;
    Py_ssize_t len;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *part = PyTuple_GET_ITEM(snap, i);
        if (!PyBytes_Check(part)) {
            PyErr_Format(PyExc_TypeError, "join_escaped: part %zd is not bytes", i);
            Py_DECREF(snap);
            return NULL;
        }
        data_span(part, &start, &len);
        if (len > PY_SSIZE_T_MAX - total) {
            Py_DECREF(snap);
            return PyErr_NoMemory();
        }
        total += len;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, total);
    if (out == NULL) {
        Py_DECREF(snap);
        return NULL;
    }
    char *w = PyBytes_AS_STRING(out);
    *w++ = '"';
    for (Py_ssize_t i = 0; i < count; i++) {
        data_span(PyTuple_GET_ITEM(snap, i), &start, &len);
        memcpy(w, start, (size_t)len);
        w += len;
    }
    *w = '"';
    Py_DECREF(snap);
    return out;
}

static PyMethodDef methods[] = {
    {"group_chunk_lines", group_chunk_lines, METH_O,
     "group_chunk_lines(lines) -> (groups, odd lines) | None: body.py's _group_pure in C."},
    {"join_escaped", join_escaped, METH_O,
     "join_escaped(parts) -> bytes: body.py's _join_escaped_pure in C."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "_bodyscan",
    .m_doc = "The body log's per-line grouping in C (see sidecar/parse/body.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__bodyscan(void)
{
    return PyModule_Create(&module);
}
