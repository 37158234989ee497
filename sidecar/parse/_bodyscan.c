/*
 * sidecar.parse._bodyscan: the per-line loops of the body log's fast path, in C.
 *
 * group_chunk_lines: a batch of lines grouped by request id (below); join_escaped: a request's
 * parts cut and joined into one JSON string (further down); end_record: an end record in the
 * proxy's shape read without a JSON decode (at the end).
 *
 * group_chunk_lines(lines: list[bytes])
 *     -> (dict[str, list[bytes]], list[bytes], list[int]) | None
 *
 * Exactly `_group_pure` in sidecar/parse/body.py, without a Python call per line:
 *
 *   for line in lines:
 *       k = line.find(b',"request_id":"') + 15
 *       e = line.find(b'","data":"', k)
 *       if k > 15 and e > k and line.endswith(b'"}'):  groups[line[k:e]].append(line)
 *       else:                                          odd.append(line)
 *   then every id must be ASCII without '"' or '\\', else None (the caller's per-line path);
 *   the ids become str keys, in first-seen order; the third item is each group's bytes
 *   (sum(map(len, lines)) per group, in the same order), so the join need not count them.
 *
 * The lines are kept as they are (same objects, no copy). Lines may be anything: every search
 * stays inside the line, and any failure to allocate returns NULL with the exception set.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "../_limits.h" /* MS_FROM, TIME_MIN, TIME_MAX */

static const char RID_KEY[] = ",\"request_id\":\""; /* 15 bytes, as body.py's _RID */
static const char DATA_KEY[] = "\",\"data\":\"";    /* 10 bytes, as body.py's _DATA */
#define RID_LEN 15
#define DATA_LEN 10
_Static_assert(RID_LEN >= 8 && RID_LEN <= 16 && DATA_LEN >= 8 && DATA_LEN <= 16,
               "find() compares a needle as two 8-byte words");

static inline uint64_t
load8(const char *p)
{
    uint64_t w;
    memcpy(&w, p, 8); /* one unaligned load */
    return w;
}

/* bytes.find(needle, from) on s[0:n]: the first position >= from, or -1. The needles are the
   two landmarks, 8 to 16 bytes: a candidate is compared as two (overlapping) 8-byte words,
   both inside s[p : p + m], instead of a call to memcmp. */
static Py_ssize_t
find(const char *s, Py_ssize_t n, Py_ssize_t from, const char *needle, Py_ssize_t m)
{
    if (from < 0 || n - m < from)
        return -1;
    const uint64_t head = load8(needle), tail = load8(needle + m - 8);
    const char *p = s + from;
    const char *last = s + (n - m); /* the last place the needle can start */
    while (p <= last) {
        p = memchr(p, needle[0], (size_t)(last - p) + 1);
        if (p == NULL)
            return -1;
        if (load8(p) == head && load8(p + m - 8) == tail)
            return p - s;
        p++;
    }
    return -1;
}

/* a[0:n] == b[0:n], the first 8 bytes compared inline: the ids of two requests nearly always
   differ there, and most lines follow a line of another request (streams interleave). */
static inline int
same_bytes(const char *a, const char *b, Py_ssize_t n)
{
    if (n >= 8 && load8(a) != load8(b))
        return 0;
    return memcmp(a, b, (size_t)n) == 0;
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

/*
 * The ids of a batch are grouped in a small open-addressing table keyed by the id's bytes
 * (no str object, no dict lookup per line: one str per distinct id, made at the end). Its hash
 * is seeded with the interpreter's randomized hash secret, and a probe longer than MAX_PROBE
 * (ids crafted to collide) gives up with None: the caller's per-line path, same result.
 */
#define MAX_PROBE 64

typedef struct {
    const char *rid; /* into a line that `lines` holds */
    Py_ssize_t len;
    uint64_t hash;
    Py_ssize_t group; /* index into the group arrays; -1: empty slot */
} Slot;

typedef struct {
    Slot *slots;
    size_t mask; /* capacity - 1, a power of two */
    Py_ssize_t n; /* groups */
    Py_ssize_t cap; /* room in lists / sizes */
    PyObject **lists; /* owned references (NULL entries: scan_block keeps no lists) */
    Py_ssize_t *sizes; /* bytes of each group's lines */
    Py_ssize_t *counts; /* lines of each group */
    Slot **first; /* each group's slot, in first-seen order (its id) */
} Table;

static uint64_t
rid_hash(const char *s, Py_ssize_t n)
{
    const uint64_t m = 0x9E3779B97F4A7C15ULL;
    uint64_t h = ((uint64_t)_Py_HashSecret.siphash.k0 ^ (uint64_t)n) * m;
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        h = (h ^ w) * m;
        h ^= h >> 29;
    }
    uint64_t w = (uint64_t)_Py_HashSecret.siphash.k1;
    if (i < n)
        memcpy(&w, s + i, (size_t)(n - i)); /* the rest over the seed's low bytes */
    h = (h ^ w) * m;
    h ^= h >> 32;
    h *= 0xD6E8FEB86659FD93ULL;
    h ^= h >> 32;
    return h;
}

static void
table_free(Table *t)
{
    for (Py_ssize_t i = 0; i < t->n; i++)
        Py_XDECREF(t->lists[i]);
    PyMem_Free(t->slots);
    PyMem_Free(t->lists);
    PyMem_Free(t->sizes);
    PyMem_Free(t->counts);
    PyMem_Free(t->first);
}

/* Room for one more group: the arrays, and the slots at most half full. 0, or -1 with the
   exception set. */
static int
table_room(Table *t)
{
    if (t->n == t->cap) {
        Py_ssize_t cap = t->cap ? t->cap * 2 : 64;
        PyObject **lists = PyMem_Realloc(t->lists, (size_t)cap * sizeof(PyObject *));
        if (lists == NULL)
            goto nomem;
        t->lists = lists;
        Py_ssize_t *sizes = PyMem_Realloc(t->sizes, (size_t)cap * sizeof(Py_ssize_t));
        if (sizes == NULL)
            goto nomem;
        t->sizes = sizes;
        Py_ssize_t *counts = PyMem_Realloc(t->counts, (size_t)cap * sizeof(Py_ssize_t));
        if (counts == NULL)
            goto nomem;
        t->counts = counts;
        t->cap = cap;
    }
    if ((size_t)(t->n + 1) * 2 > t->mask + 1 || t->slots == NULL) {
        size_t size = t->slots == NULL ? 128 : (t->mask + 1) * 2;
        Slot *slots = PyMem_Calloc(size, sizeof(Slot));
        Slot **first = PyMem_Realloc(t->first, (size / 2) * sizeof(Slot *));
        if (slots == NULL || first == NULL) {
            PyMem_Free(slots);
            if (first != NULL)
                t->first = first;
            goto nomem;
        }
        t->first = first;
        for (size_t i = 0; i < size; i++)
            slots[i].group = -1;
        size_t mask = size - 1;
        for (Py_ssize_t g = 0; g < t->n; g++) { /* re-insert: the hashes are distinct slots */
            Slot *old = t->first[g];
            size_t j = (size_t)old->hash & mask;
            while (slots[j].group >= 0)
                j = (j + 1) & mask;
            slots[j] = *old;
            t->first[g] = &slots[j];
        }
        PyMem_Free(t->slots);
        t->slots = slots;
        t->mask = mask;
    }
    return 0;
nomem:
    PyErr_NoMemory();
    return -1;
}

/* What to do with one line: its group's index (>= 0), or ODD (not in the canonical shape: the
   caller's careful path), GIVE_UP (an id that is not plain, or a probe past MAX_PROBE: the
   whole batch takes the per-line path), FAILED (an exception is set). `*prev` is the previous
   grouped line's group: consecutive lines of one request skip the table (an index: a slot
   moves when the table grows). `lists`: make each new group's list (group_chunk_lines). */
#define ODD (-1)
#define GIVE_UP (-2)
#define FAILED (-3)

static Py_ssize_t
line_group(Table *t, const char *s, Py_ssize_t n, Py_ssize_t *prev, int lists)
{
    /* k = line.find(RID) + 15; e = line.find(DATA, k); k > 15 and e > k and '"}' */
    Py_ssize_t j = find(s, n, 0, RID_KEY, RID_LEN);
    Py_ssize_t k = j + RID_LEN;
    Py_ssize_t e = j > 0 ? find(s, n, k, DATA_KEY, DATA_LEN) : -1;
    if (!(j > 0 && e > k && s[n - 1] == '}' && s[n - 2] == '"'))
        return ODD;
    const char *rid = s + k;
    Py_ssize_t rid_len = e - k;
    Py_ssize_t group = *prev;
    if (group >= 0 && rid_len == t->first[group]->len &&
        same_bytes(rid, t->first[group]->rid, rid_len))
        return group;
    if (table_room(t) < 0)
        return FAILED;
    uint64_t h = rid_hash(rid, rid_len);
    size_t at = (size_t)h & t->mask;
    int probes = 0;
    Slot *slot;
    for (;;) {
        slot = &t->slots[at];
        if (slot->group < 0)
            break;
        if (slot->hash == h && slot->len == rid_len && same_bytes(slot->rid, rid, rid_len))
            break;
        if (++probes > MAX_PROBE)
            return GIVE_UP; /* degenerate: the per-line path */
        at = (at + 1) & t->mask;
    }
    if (slot->group < 0) { /* a new id */
        /* The Python path's per-id check, which sends the batch to the per-line path (None)
           when any id fails: plain ASCII, no quote, no backslash. */
        if (!is_ascii(rid, rid_len) || memchr(rid, '"', (size_t)rid_len) != NULL ||
            memchr(rid, '\\', (size_t)rid_len) != NULL)
            return GIVE_UP;
        PyObject *list = NULL;
        if (lists && (list = PyList_New(0)) == NULL)
            return FAILED;
        slot->rid = rid;
        slot->len = rid_len;
        slot->hash = h;
        slot->group = t->n;
        t->lists[t->n] = list;
        t->sizes[t->n] = 0;
        t->counts[t->n] = 0;
        t->first[t->n] = slot;
        t->n++;
    }
    return *prev = slot->group;
}

/* The ids as str keys (rid.decode("ascii"): a compact ASCII str, filled in place) in first-seen
   order, each with values[g] (borrowed), and each group's bytes: (dict, sizes list), or -1. */
static int
keys_and_sizes(Table *t, PyObject **values, PyObject **groups, PyObject **sizes)
{
    *groups = PyDict_New();
    *sizes = PyList_New(t->n);
    if (*groups == NULL || *sizes == NULL)
        return -1;
    for (Py_ssize_t g = 0; g < t->n; g++) {
        Slot *slot = t->first[g];
        PyObject *key = PyUnicode_New(slot->len, 127);
        if (key == NULL)
            return -1;
        memcpy(PyUnicode_1BYTE_DATA(key), slot->rid, (size_t)slot->len);
        int r = PyDict_SetItem(*groups, key, values[g]);
        Py_DECREF(key);
        if (r < 0)
            return -1;
        PyObject *size = PyLong_FromSsize_t(t->sizes[g]);
        if (size == NULL)
            return -1;
        PyList_SET_ITEM(*sizes, g, size);
    }
    return 0;
}

static PyObject *
group_chunk_lines(PyObject *module, PyObject *lines)
{
    (void)module;
    if (!PyList_Check(lines)) {
        PyErr_SetString(PyExc_TypeError, "group_chunk_lines: a list of bytes expected");
        return NULL;
    }
    Table t = {0};
    PyObject *groups = NULL, *sizes = NULL, *out = NULL;
    PyObject *odd = PyList_New(0);
    if (odd == NULL)
        return NULL;
    Py_ssize_t prev = -1;

    /* The list is read again at every step (its size may not change, but be safe). */
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(lines); i++) {
        PyObject *line = PyList_GET_ITEM(lines, i);
        if (!PyBytes_Check(line)) {
            PyErr_Format(PyExc_TypeError, "group_chunk_lines: line %zd is not bytes", i);
            goto fail;
        }
        Py_ssize_t n = PyBytes_GET_SIZE(line);
        Py_ssize_t g = line_group(&t, PyBytes_AS_STRING(line), n, &prev, 1);
        if (g == ODD) {
            if (PyList_Append(odd, line) < 0)
                goto fail;
            continue;
        }
        if (g == GIVE_UP)
            goto give_up;
        if (g == FAILED || PyList_Append(t.lists[g], line) < 0)
            goto fail;
        t.sizes[g] += n;
    }
    if (keys_and_sizes(&t, t.lists, &groups, &sizes) < 0)
        goto fail;
    out = PyTuple_Pack(3, groups, odd, sizes);
    /* fall through: the tuple (or nothing) holds what it needs */
fail:
    table_free(&t);
    Py_XDECREF(groups);
    Py_XDECREF(sizes);
    Py_DECREF(odd);
    return out;

give_up:
    table_free(&t);
    Py_DECREF(odd);
    Py_RETURN_NONE;
}

/*
 * scan_block(head: list[bytes], block: bytes, start: int, end: int)
 *     -> (dict[str, bytes], list[bytes], list[int], list[int], int) | None
 *
 * Exactly `_scan_block_pure` in sidecar/parse/body.py: the lines are `head` and then the pieces
 * of block[start:end] between newlines (a batch of sidecar/sources/lines.py); they are grouped
 * as by group_chunk_lines, but each group comes as ONE bytes object, its lines joined by b"\n"
 * in file order (one copy of each line, no object per line), then the odd lines (bytes), each
 * group's bytes without the newlines, each group's line count, and the number of lines; None
 * as there.
 */
typedef struct {
    const char *s; /* into `block` or an item of `head` */
    Py_ssize_t n;
    Py_ssize_t group;
} Span;

static PyObject *
scan_block(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 4 || !PyList_Check(args[0]) || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "scan_block(head: list, block: bytes, start, end)");
        return NULL;
    }
    PyObject *head = args[0], *block = args[1];
    Py_ssize_t start = PyLong_AsSsize_t(args[2]);
    if (start == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t end = PyLong_AsSsize_t(args[3]);
    if (end == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t size = PyBytes_GET_SIZE(block);
    if (start < 0 || end < 0) {
        PyErr_SetString(PyExc_ValueError, "scan_block: negative start or end");
        return NULL;
    }
    if (end > size)
        end = size;
    if (start > end)
        start = end; /* block[start:end] is empty: one empty line */

    Table t = {0};
    Span *spans = NULL;
    Py_ssize_t nspans = 0, spans_cap = 0;
    PyObject **blobs = NULL;
    char **cur = NULL;
    PyObject *groups = NULL, *sizes = NULL, *counts = NULL, *out = NULL;
    PyObject *odd = PyList_New(0);
    if (odd == NULL)
        return NULL;
    Py_ssize_t prev = -1, nlines = 0;

    /* The head list may hold anything: checked item by item, read again at every step. */
    Py_ssize_t nhead = PyList_GET_SIZE(head);
    const char *p = PyBytes_AS_STRING(block) + start;
    const char *stop = PyBytes_AS_STRING(block) + end;
    for (Py_ssize_t i = 0;; i++) {
        const char *s;
        Py_ssize_t n;
        PyObject *item = NULL;
        if (i < nhead && i < PyList_GET_SIZE(head)) {
            item = PyList_GET_ITEM(head, i);
            if (!PyBytes_Check(item)) {
                PyErr_Format(PyExc_TypeError, "scan_block: head line %zd is not bytes", i);
                goto fail;
            }
            s = PyBytes_AS_STRING(item);
            n = PyBytes_GET_SIZE(item);
        }
        else {
            if (p == NULL)
                break; /* past the block's last piece */
            const char *nl = p < stop ? memchr(p, '\n', (size_t)(stop - p)) : NULL;
            s = p;
            n = (nl != NULL ? nl : stop) - p;
            p = nl != NULL ? nl + 1 : NULL;
        }
        nlines++;
        Py_ssize_t g = line_group(&t, s, n, &prev, 0);
        if (g == ODD) {
            int r;
            if (item != NULL)
                r = PyList_Append(odd, item);
            else {
                PyObject *line = PyBytes_FromStringAndSize(s, n);
                if (line == NULL)
                    goto fail;
                r = PyList_Append(odd, line);
                Py_DECREF(line);
            }
            if (r < 0)
                goto fail;
            continue;
        }
        if (g == GIVE_UP)
            goto give_up;
        if (g == FAILED)
            goto fail;
        if (nspans == spans_cap) {
            /* body-log lines are some hundred bytes: one allocation for most blocks */
            Py_ssize_t cap = spans_cap ? spans_cap * 2 : (end - start) / 128 + 64;
            Span *more = PyMem_Realloc(spans, (size_t)cap * sizeof(Span));
            if (more == NULL) {
                PyErr_NoMemory();
                goto fail;
            }
            spans = more;
            spans_cap = cap;
        }
        spans[nspans].s = s;
        spans[nspans].n = n;
        spans[nspans].group = g;
        nspans++;
        t.sizes[g] += n;
        t.counts[g]++;
    }

    /* One bytes object per group, then every grouped line copied into its group's. */
    if (t.n > 0) {
        blobs = PyMem_Calloc((size_t)t.n, sizeof(PyObject *));
        cur = PyMem_Calloc((size_t)t.n, sizeof(char *));
        if (blobs == NULL || cur == NULL) {
            PyErr_NoMemory();
            goto fail;
        }
    }
    for (Py_ssize_t g = 0; g < t.n; g++) {
        /* sizes[g] + counts[g] - 1 <= the bytes scanned: no overflow */
        blobs[g] = PyBytes_FromStringAndSize(NULL, t.sizes[g] + t.counts[g] - 1);
        if (blobs[g] == NULL)
            goto fail;
        cur[g] = PyBytes_AS_STRING(blobs[g]);
    }
    for (Py_ssize_t i = 0; i < nspans; i++) {
        Py_ssize_t g = spans[i].group;
        if (cur[g] != PyBytes_AS_STRING(blobs[g]))
            *cur[g]++ = '\n';
        memcpy(cur[g], spans[i].s, (size_t)spans[i].n);
        cur[g] += spans[i].n;
    }
    if (keys_and_sizes(&t, blobs, &groups, &sizes) < 0)
        goto fail;
    counts = PyList_New(t.n);
    if (counts == NULL)
        goto fail;
    for (Py_ssize_t g = 0; g < t.n; g++) {
        PyObject *c = PyLong_FromSsize_t(t.counts[g]);
        if (c == NULL)
            goto fail;
        PyList_SET_ITEM(counts, g, c);
    }
    PyObject *lines = PyLong_FromSsize_t(nlines);
    if (lines == NULL)
        goto fail;
    out = PyTuple_Pack(5, groups, odd, sizes, counts, lines);
    Py_DECREF(lines);
    /* fall through: the tuple (or nothing) holds what it needs */
fail:
    if (blobs != NULL) {
        for (Py_ssize_t g = 0; g < t.n; g++)
            Py_XDECREF(blobs[g]);
    }
    PyMem_Free(blobs);
    PyMem_Free(cur);
    PyMem_Free(spans);
    table_free(&t);
    Py_XDECREF(groups);
    Py_XDECREF(sizes);
    Py_XDECREF(counts);
    Py_DECREF(odd);
    return out;

give_up:
    PyMem_Free(spans);
    table_free(&t);
    Py_DECREF(odd);
    Py_RETURN_NONE;
}

/* A line's escaped `data`, as assemble_escaped's pure twin cuts it: p[p.find(DATA) + 10 : -2]
   (Python's slice rules: an end before the start is empty, -2 on a short line is 0). */
static void
data_span(const char *s, Py_ssize_t n, const char **start, Py_ssize_t *len)
{
    Py_ssize_t a = find(s, n, 0, DATA_KEY, DATA_LEN) + DATA_LEN;
    Py_ssize_t b = n >= 2 ? n - 2 : 0;
    *start = s + a;
    *len = b > a ? b - a : 0;
}

/* The `data` of a part's lines (the part itself, or with `split` each piece between its
   newlines): added up in *total (w == NULL, -1 on overflow), or copied to w (returns the end). */
static char *
part_data(const char *s, Py_ssize_t n, int split, char *w, Py_ssize_t *total)
{
    const char *end = s + n;
    for (;;) {
        const char *nl = split && s < end ? memchr(s, '\n', (size_t)(end - s)) : NULL;
        const char *stop = nl != NULL ? nl : end;
        const char *start;
        Py_ssize_t len;
        data_span(s, stop - s, &start, &len);
        if (w != NULL) {
            memcpy(w, start, (size_t)len);
            w += len;
        }
        else if (*total >= 0) {
            *total = len > PY_SSIZE_T_MAX - *total ? -1 : *total + len;
        }
        if (nl == NULL)
            return w;
        s = nl + 1;
    }
}

/* join_escaped, and with `split` join_escaped_lines: two passes over a tuple snapshot of
   `parts` (lengths, then copies): nothing can change it in between. */
static PyObject *
join_parts(PyObject *parts, int split, const char *name)
{
    PyObject *snap = PySequence_Tuple(parts);
    if (snap == NULL)
        return NULL;
    Py_ssize_t count = PyTuple_GET_SIZE(snap);
    Py_ssize_t total = 2; /* the two quotes */
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *part = PyTuple_GET_ITEM(snap, i);
        if (!PyBytes_Check(part)) {
            PyErr_Format(PyExc_TypeError, "%s: part %zd is not bytes", name, i);
            Py_DECREF(snap);
            return NULL;
        }
        part_data(PyBytes_AS_STRING(part), PyBytes_GET_SIZE(part), split, NULL, &total);
        if (total < 0) {
            Py_DECREF(snap);
            return PyErr_NoMemory();
        }
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, total);
    if (out == NULL) {
        Py_DECREF(snap);
        return NULL;
    }
    char *w = PyBytes_AS_STRING(out);
    *w++ = '"';
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *part = PyTuple_GET_ITEM(snap, i);
        w = part_data(PyBytes_AS_STRING(part), PyBytes_GET_SIZE(part), split, w, NULL);
    }
    *w = '"';
    Py_DECREF(snap);
    return out;
}

/*
 * join_escaped(parts) -> bytes: b'"' + b"".join(p[p.find(DATA) + 10 : -2] for p in parts) + b'"'
 *
 * `_join_escaped_pure` in sidecar/parse/body.py: a request's body, still JSON-escaped, as one
 * JSON string for one orjson.loads, without a slice (a copy) per part.
 */
static PyObject *
join_escaped(PyObject *module, PyObject *parts)
{
    (void)module;
    return join_parts(parts, 0, "join_escaped");
}

/*
 * join_escaped_lines(parts) -> bytes: join_escaped of every part's lines, `p.split(b"\n")`
 * (the join's chunks: sidecar/join/pending.py), without an object per line.
 */
static PyObject *
join_escaped_lines(PyObject *module, PyObject *parts)
{
    (void)module;
    return join_parts(parts, 1, "join_escaped_lines");
}

/*
 * end_record(line) -> (str, float | None, str) | None
 *
 * `_end_record_pure` in sidecar/parse/body.py: an end record in the shape the proxy writes,
 * `{"ts":T,"request_id":"ID","end":"E"}` exactly (T digits, at most 15, and at most 17 more
 * after a point; ID and E printable ASCII without a quote or a backslash, ID neither empty
 * nor "-"), read without a JSON decode -> (ID, the time as parse_time reads T, E); anything
 * else None (the caller's careful path). One line per request, which the careful path reads
 * in a dozen Python calls.
 */
static const char END_KEY[] = "\",\"end\":\""; /* 9 bytes, as body.py's _END */
#define END_LEN 9

static int
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* printable ASCII without '"' or '\\': a JSON string's content with nothing to decode */
static int
plain_text(const char *s, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c > 0x7e || c == '"' || c == '\\')
            return 0;
    }
    return 1;
}

static PyObject *
end_record(PyObject *module, PyObject *line)
{
    (void)module;
    if (!PyBytes_CheckExact(line))
        Py_RETURN_NONE;
    const char *s = PyBytes_AS_STRING(line);
    Py_ssize_t n = PyBytes_GET_SIZE(line);
    if (n < 8 || memcmp(s, "{\"ts\":", 6) != 0 || s[n - 2] != '"' || s[n - 1] != '}')
        Py_RETURN_NONE;
    /* T: (0|[1-9][0-9]{0,14})(\.[0-9]{1,17})?, then RID_KEY at once */
    Py_ssize_t i = 6;
    while (i < n && is_digit(s[i]))
        i++;
    Py_ssize_t whole = i - 6;
    if (whole < 1 || whole > 15 || (whole > 1 && s[6] == '0'))
        Py_RETURN_NONE;
    if (i < n && s[i] == '.') {
        Py_ssize_t dot = ++i;
        while (i < n && is_digit(s[i]))
            i++;
        if (i - dot < 1 || i - dot > 17)
            Py_RETURN_NONE;
    }
    Py_ssize_t t_end = i;
    if (n - i < RID_LEN || memcmp(s + i, RID_KEY, RID_LEN) != 0)
        Py_RETURN_NONE;
    Py_ssize_t k = i + RID_LEN;
    /* ID: up to the first quote, where END_KEY must start; E: from there to the final '"}' */
    const char *q = k < n ? memchr(s + k, '"', (size_t)(n - k)) : NULL;
    if (q == NULL)
        Py_RETURN_NONE;
    Py_ssize_t e = q - s;
    if (n - 2 - e < END_LEN || memcmp(s + e, END_KEY, END_LEN) != 0)
        Py_RETURN_NONE;
    Py_ssize_t v = e + END_LEN;
    if (e == k || (e - k == 1 && s[k] == '-') || !plain_text(s + k, e - k) ||
        !plain_text(s + v, n - 2 - v))
        Py_RETURN_NONE;
    char buf[40]; /* T: at most 15 + 1 + 17 bytes */
    memcpy(buf, s + 6, (size_t)(t_end - 6));
    buf[t_end - 6] = '\0';
    double t = PyOS_string_to_double(buf, NULL, NULL); /* float(T): what orjson's number is */
    if (t == -1.0 && PyErr_Occurred())
        return NULL;
    if (t > MS_FROM) /* parse_time: epoch milliseconds */
        t /= 1000.0;
    PyObject *ts;
    if (TIME_MIN <= t && t <= TIME_MAX)
        ts = PyFloat_FromDouble(t);
    else
        ts = Py_NewRef(Py_None);
    PyObject *rid = PyUnicode_DecodeASCII(s + k, e - k, NULL);
    PyObject *end = PyUnicode_DecodeASCII(s + v, n - 2 - v, NULL);
    PyObject *out = NULL;
    if (ts != NULL && rid != NULL && end != NULL)
        out = PyTuple_Pack(3, rid, ts, end);
    Py_XDECREF(ts);
    Py_XDECREF(rid);
    Py_XDECREF(end);
    return out;
}

static PyMethodDef methods[] = {
    {"group_chunk_lines", group_chunk_lines, METH_O,
     "group_chunk_lines(lines) -> (groups, odd lines, group sizes) | None: body.py's _group_pure in C."},
    {"scan_block", (PyCFunction)(void (*)(void))scan_block, METH_FASTCALL,
     "scan_block(head, block, start, end) -> (groups of joined lines, odd lines, group sizes, "
     "group line counts, lines) | None: body.py's _scan_block_pure in C."},
    {"join_escaped", join_escaped, METH_O,
     "join_escaped(parts) -> bytes: body.py's _join_escaped_pure in C."},
    {"join_escaped_lines", join_escaped_lines, METH_O,
     "join_escaped_lines(parts) -> bytes: body.py's _join_escaped_lines_pure in C."},
    {"end_record", end_record, METH_O,
     "end_record(line) -> (request id, time, end) | None: body.py's _end_record_pure in C."},
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
