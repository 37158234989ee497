/*
 * sidecar.parse._tailscan: the usual end of an OpenAI chat stream read straight from the raw
 * body-log records, in C (see sidecar/parse/tailscan.py).
 *
 * chat_tail(parts, head_bytes, tail_bytes) -> (model, id, service_tier, finish_reason,
 *     prompt_tokens, cached_tokens, cache_write_tokens, completion_tokens, reasoning_tokens)
 *     | None
 *
 * `parts` are a request's body-log records as the join hands them on (`Completed.parts`, each
 * `...","data":"<escaped>"}`, read as `assemble_escaped` reads them); `head_bytes` and
 * `tail_bytes` are parse/response.py's `WINDOW_HEAD_BYTES` and first `_EDGE_TAILS`. The answer
 * is what `_parse_edges` then `openai_chat.parse_tail` give, on their first try, for a stream
 * that ends the usual way (a finish chunk, a usage chunk with `choices: []`, `[DONE]`), without
 * decoding the tail into a str nor its two chunks into dicts: the same parts chosen (the head's
 * and the tail's, by their sizes), the same checks (the first record a JSON string whose first
 * character starts an SSE event, the tail's last three blocks as `str.rsplit` cuts them, a
 * block boundary before the finish chunk inside the tail, no `"error"` in either chunk), the
 * same fields read.
 *
 * None whenever it cannot prove that answer, and then the Python path decides (it may give the
 * same answer, or another): a part that is not bytes or not in the canonical shape, a record
 * that is not a JSON string with only the short escapes (`\"` `\\` `\/` `\b` `\f` `\n` `\t`: a
 * `\u` or `\r` escape is left to Python), a tail not ending as above, a chunk outside a small
 * subset of JSON that orjson surely reads the same (printable ASCII only, no escape in any
 * string, unsigned integers of at most 15 digits without fraction or exponent, no key given
 * twice in any object, at most MAX_KEYS keys an object, MAX_DEPTH levels), or counts that the
 * usual usage does not have (`usage_from`'s checked path: a count that is not such an integer,
 * a cached or cache-write count neither null nor one, a missing reasoning count, which
 * `_finalise` may answer from the whole text).
 *
 * Every Python object is created at the end, from the bytes read and copied: nothing runs
 * while the parts are read. Errors (memory) return NULL with the exception set.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define MAX_DEPTH 16   /* deeper chunks go to Python (orjson allows 1024) */
#define MAX_KEYS 32    /* keys of one object kept for the duplicate check */
#define MAX_DIGITS 15  /* below 2^53: exactly what orjson reads, within usage_from's bounds */
#define STACK_BYTES 8192

static const char DATA_KEY[] = "\",\"data\":\""; /* body.py's _DATA */
#define DATA_LEN 10

/* ------------------------------------------------------------------ the records */

/* A part's escaped `data` (`p[p.find(DATA) + 10 : -2]`), or -1: not bytes, or no key. */
static int
data_span(PyObject *part, const unsigned char **start, Py_ssize_t *len)
{
    if (!PyBytes_CheckExact(part))
        return -1;
    const char *s = PyBytes_AS_STRING(part);
    Py_ssize_t n = PyBytes_GET_SIZE(part);
    const char *k = memchr(s, '"', (size_t)n); /* the key's first byte: hop from quote to quote */
    while (k != NULL && (s + n - k < DATA_LEN || memcmp(k, DATA_KEY, DATA_LEN) != 0))
        k = memchr(k + 1, '"', (size_t)(s + n - k - 1));
    if (k == NULL)
        return -1;
    Py_ssize_t a = (k - s) + DATA_LEN;
    if (a > n - 2)
        return -1;
    *start = (const unsigned char *)s + a;
    *len = n - 2 - a;
    return 0;
}

/* ESC[c]: what the escape `\c` decodes to, 0 for one left to Python (`\u`, `\r`, invalid).
 * PLAIN[c]: a byte copied as it is into a JSON string (not a control character, quote or
 * backslash; any byte from 0x80: invalid UTF-8 is replaced the same wherever it stands). */
static unsigned char ESC[256];
static unsigned char PLAIN[256];

#if defined(__SSE2__)
#include <emmintrin.h>
/* The bits of the bytes of `x` that are a quote, a backslash or a control character; with
 * `printable`, also those from 0x7F (a string's bytes in the JSON subset). */
static inline int
specials(__m128i x, int printable)
{
    __m128i m = _mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8('"')),
                             _mm_cmpeq_epi8(x, _mm_set1_epi8('\\')));
    m = _mm_or_si128(m, _mm_cmpeq_epi8(_mm_min_epu8(x, _mm_set1_epi8(0x1F)), x));
    if (printable)
        m = _mm_or_si128(m, _mm_cmpeq_epi8(_mm_max_epu8(x, _mm_set1_epi8(0x7F)), x));
    return _mm_movemask_epi8(m);
}
#endif

/* Decode the escaped `data` at `s` (`n` bytes) into `out` (NULL: check only; else room for
 * `n` bytes: 16 at a time are copied before they are looked at, never past the `n`th). The
 * number of bytes written, or -1: not a JSON string of the short escapes. */
static Py_ssize_t
unescape(const unsigned char *s, Py_ssize_t n, unsigned char *out)
{
    Py_ssize_t i = 0, w = 0;
    for (;;) {
#if defined(__SSE2__)
        while (n - i >= 16) { /* w <= i: out[w:w+16] is within its n bytes */
            __m128i x = _mm_loadu_si128((const __m128i *)(s + i));
            if (out)
                _mm_storeu_si128((__m128i *)(out + w), x);
            int bits = specials(x, 0);
            if (bits) {
                int k = __builtin_ctz((unsigned)bits);
                i += k;
                w += k;
                break;
            }
            i += 16;
            w += 16;
        }
#endif
        while (i < n && PLAIN[s[i]]) {
            if (out)
                out[w] = s[i];
            w++;
            i++;
        }
        if (i >= n)
            return w;
        if (s[i] != '\\' || i + 1 >= n || !ESC[s[i + 1]])
            return -1;
        if (out)
            out[w] = ESC[s[i + 1]];
        w++;
        i += 2;
    }
}

/* The last "\n\n" in buf[0:end], or -1 (`bytes.rfind`). A byte that is not a newline rules
 * out the matches at it and just before it. */
static Py_ssize_t
rfind_blank(const unsigned char *buf, Py_ssize_t end)
{
    Py_ssize_t i = end - 2;
    while (i >= 0) {
        if (buf[i] != '\n')
            i -= 2;
        else if (buf[i + 1] == '\n')
            return i;
        else
            i--;
    }
    return -1;
}

/* The first "\n\n" in buf[from:end], or -1 (`bytes.find`). */
static Py_ssize_t
find_blank(const unsigned char *buf, Py_ssize_t from, Py_ssize_t end)
{
    Py_ssize_t i = from;
    while (i + 1 < end) {
        const unsigned char *q = memchr(buf + i, '\n', (size_t)(end - 1 - i));
        if (q == NULL)
            return -1;
        i = q - buf;
        if (buf[i + 1] == '\n')
            return i;
        i += 2; /* buf[i + 1] is not a newline: no match at i + 1 either */
    }
    return -1;
}

/* `anthropic._data`: the block buf[a:b] is `prefix` then a rest without a newline; the rest's
 * start, or -1. */
static Py_ssize_t
data_after(const unsigned char *buf, Py_ssize_t a, Py_ssize_t b, const char *prefix)
{
    Py_ssize_t n = (Py_ssize_t)strlen(prefix);
    if (b - a < n || memcmp(buf + a, prefix, (size_t)n) != 0)
        return -1;
    if (memchr(buf + a + n, '\n', (size_t)(b - a - n)) != NULL)
        return -1;
    return a + n;
}

/* ------------------------------------------------------------------ the JSON subset */

#define FAIL (-1)

typedef struct {
    const unsigned char *p, *e;
    int depth;
} J;

typedef struct {
    const unsigned char *s;
    Py_ssize_t n; /* s NULL: None (as_str: not a non-empty string) */
} Str;

/* STR[c]: a byte allowed inside a string here (printable ASCII but the quote and backslash). */
static unsigned char STR[256];

static inline void
ws(J *j)
{
    while (j->p < j->e && *j->p == ' ')
        j->p++;
}

static inline int
at(const J *j, unsigned char c)
{
    return j->p < j->e && *j->p == c;
}

/* A string at its opening quote: its contents. The string "error" fails: with no escapes in
 * strings, a chunk of the subset holds `"error"` (which parse_tail leaves to the stream walk)
 * exactly when one of its strings is `error` (a closing quote cannot be followed by a letter). */
static int
string(J *j, Str *out)
{
    const unsigned char *p = j->p + 1, *e = j->e;
    const unsigned char *a = p;
#if defined(__SSE2__)
    while (e - p >= 16) {
        int bits = specials(_mm_loadu_si128((const __m128i *)p), 1);
        if (bits) {
            p += __builtin_ctz((unsigned)bits);
            break;
        }
        p += 16;
    }
#endif
    while (p < e && STR[*p])
        p++;
    if (p >= e || *p != '"')
        return FAIL;
    if (p - a == 5 && memcmp(a, "error", 5) == 0)
        return FAIL;
    out->s = a;
    out->n = p - a;
    j->p = p + 1;
    return 0;
}

/* An unsigned integer of at most MAX_DIGITS digits, no leading zero, no fraction or exponent. */
static int
number(J *j, long long *v)
{
    const unsigned char *p = j->p, *e = j->e;
    long long r = 0;
    int digits = 0;
    while (p < e && *p >= '0' && *p <= '9') {
        r = r * 10 + (*p - '0');
        p++;
        if (++digits > MAX_DIGITS)
            return FAIL;
    }
    if (digits == 0 || (digits > 1 && *j->p == '0'))
        return FAIL;
    if (p < e && (*p == '.' || *p == 'e' || *p == 'E'))
        return FAIL;
    *v = r;
    j->p = p;
    return 0;
}

static int
literal(J *j, const char *word, Py_ssize_t n)
{
    if (j->e - j->p < n || memcmp(j->p, word, (size_t)n) != 0)
        return FAIL;
    j->p += n;
    return 0;
}

typedef int (*KeyFn)(void *ctx, const Str *key, J *j);

static int object(J *j, KeyFn fn, void *ctx);

static int
array(J *j, KeyFn each, void *ctx, Py_ssize_t *count);

/* Any value of the subset, read past. */
static int
value(J *j)
{
    if (j->p >= j->e)
        return FAIL;
    switch (*j->p) {
    case '"': {
        Str s;
        return string(j, &s);
    }
    case '{':
        return object(j, NULL, NULL);
    case '[':
        return array(j, NULL, NULL, NULL);
    case 't':
        return literal(j, "true", 4);
    case 'f':
        return literal(j, "false", 5);
    case 'n':
        return literal(j, "null", 4);
    default: {
        long long v;
        return number(j, &v);
    }
    }
}

/* An object at its `{`: each key checked against the ones before it, its value read by
 * `fn(ctx, key, j)` (NULL: read past). */
static int
object(J *j, KeyFn fn, void *ctx)
{
    Str keys[MAX_KEYS];
    int nk = 0;
    if (++j->depth > MAX_DEPTH)
        return FAIL;
    j->p++;
    ws(j);
    if (at(j, '}')) {
        j->p++;
        j->depth--;
        return 0;
    }
    for (;;) {
        Str k;
        if (!at(j, '"') || string(j, &k) < 0 || nk == MAX_KEYS)
            return FAIL;
        for (int i = 0; i < nk; i++)
            if (keys[i].n == k.n && memcmp(keys[i].s, k.s, (size_t)k.n) == 0)
                return FAIL;
        keys[nk++] = k;
        ws(j);
        if (!at(j, ':'))
            return FAIL;
        j->p++;
        ws(j);
        if ((fn ? fn(ctx, &k, j) : value(j)) < 0)
            return FAIL;
        ws(j);
        if (at(j, ',')) {
            j->p++;
            ws(j);
            continue;
        }
        if (!at(j, '}'))
            return FAIL;
        j->p++;
        j->depth--;
        return 0;
    }
}

/* An array at its `[`: each element read by `each(ctx, NULL, j)` (NULL: read past). */
static int
array(J *j, KeyFn each, void *ctx, Py_ssize_t *count)
{
    Py_ssize_t n = 0;
    if (++j->depth > MAX_DEPTH)
        return FAIL;
    j->p++;
    ws(j);
    if (!at(j, ']')) {
        for (;;) {
            if ((each ? each(ctx, NULL, j) : value(j)) < 0)
                return FAIL;
            n++;
            ws(j);
            if (at(j, ',')) {
                j->p++;
                ws(j);
                continue;
            }
            if (!at(j, ']'))
                return FAIL;
            break;
        }
    }
    j->p++;
    j->depth--;
    if (count)
        *count = n;
    return 0;
}

#define KEY(k, lit) ((k)->n == (Py_ssize_t)sizeof(lit) - 1 && memcmp((k)->s, lit, sizeof(lit) - 1) == 0)

/* as_str of a value: a non-empty string, else None (the value read past). */
static int
str_or_none(J *j, Str *out)
{
    if (at(j, '"')) {
        if (string(j, out) < 0)
            return FAIL;
        if (out->n == 0)
            out->s = NULL;
        return 0;
    }
    out->s = NULL;
    return value(j);
}

/* A count as `usage_from`'s fast path takes it: an integer (`null_ok`: or null). */
static int
count(J *j, long long *v, int *set, int null_ok)
{
    if (at(j, 'n') && null_ok) {
        *set = 0;
        return literal(j, "null", 4);
    }
    if (j->p >= j->e || *j->p < '0' || *j->p > '9')
        return FAIL; /* another type (or a negative): usage_from's checked path */
    *set = 1;
    return number(j, v);
}

typedef struct {
    Str model, id, tier;
    /* the usage chunk */
    int choices_empty, usage_seen;
    long long prompt, completion, cached, write, reasoning;
    int prompt_set, completion_set, cached_set, write_set, reasoning_set;
    /* the finish chunk */
    Py_ssize_t choices;
    Str finish;
} Chunk;

static int
prompt_details(void *ctx, const Str *k, J *j)
{
    Chunk *c = ctx;
    if (KEY(k, "cached_tokens"))
        return count(j, &c->cached, &c->cached_set, 1);
    if (KEY(k, "cache_write_tokens"))
        return count(j, &c->write, &c->write_set, 1);
    return value(j);
}

static int
completion_details(void *ctx, const Str *k, J *j)
{
    Chunk *c = ctx;
    if (KEY(k, "reasoning_tokens"))
        return count(j, &c->reasoning, &c->reasoning_set, 0);
    return value(j);
}

static int
usage(void *ctx, const Str *k, J *j)
{
    Chunk *c = ctx;
    if (KEY(k, "prompt_tokens"))
        return count(j, &c->prompt, &c->prompt_set, 0);
    if (KEY(k, "completion_tokens"))
        return count(j, &c->completion, &c->completion_set, 0);
    if (KEY(k, "prompt_tokens_details"))
        return at(j, '{') ? object(j, prompt_details, c) : value(j); /* not an object: None */
    if (KEY(k, "completion_tokens_details"))
        return at(j, '{') ? object(j, completion_details, c) : FAIL;
    return value(j);
}

/* model, id and service_tier of either chunk. */
static int
common(Chunk *c, const Str *k, J *j)
{
    if (KEY(k, "model"))
        return str_or_none(j, &c->model);
    if (KEY(k, "id"))
        return str_or_none(j, &c->id);
    if (KEY(k, "service_tier"))
        return str_or_none(j, &c->tier);
    return value(j);
}

static int
usage_chunk(void *ctx, const Str *k, J *j)
{
    Chunk *c = ctx;
    if (KEY(k, "choices")) { /* must be [] */
        if (!at(j, '['))
            return FAIL;
        j->p++;
        ws(j);
        if (!at(j, ']'))
            return FAIL;
        j->p++;
        c->choices_empty = 1;
        return 0;
    }
    if (KEY(k, "usage")) {
        c->usage_seen = 1;
        return at(j, '{') ? object(j, usage, c) : FAIL;
    }
    return common(c, k, j);
}

static int
choice_key(void *ctx, const Str *k, J *j)
{
    Chunk *c = ctx;
    if (KEY(k, "finish_reason")) {
        Str r;
        if (str_or_none(j, &r) < 0)
            return FAIL;
        if (r.s != NULL)
            c->finish = r; /* the last choice that has one: _finish_reason walks reversed */
        return 0;
    }
    return value(j);
}

static int
choice(void *ctx, const Str *k, J *j)
{
    (void)k;
    return at(j, '{') ? object(j, choice_key, ctx) : value(j);
}

static int
finish_chunk(void *ctx, const Str *k, J *j)
{
    Chunk *c = ctx;
    if (KEY(k, "choices"))
        return at(j, '[') ? array(j, choice, c, &c->choices) : FAIL;
    return common(c, k, j);
}

/* The block `data: {...}` at buf[a:b]: its object read by `fn`, nothing after it but spaces. */
static int
chunk(const unsigned char *buf, Py_ssize_t a, Py_ssize_t b, KeyFn fn, Chunk *c)
{
    if (b - a < 7 || memcmp(buf + a, "data: {", 7) != 0)
        return FAIL;
    J j = {buf + a + 6, buf + b, 0};
    if (object(&j, fn, c) < 0)
        return FAIL;
    ws(&j);
    return j.p == j.e ? 0 : FAIL;
}

/* ------------------------------------------------------------------ chat_tail */

static PyObject *
str_or_py_none(const Str *s)
{
    if (s->s == NULL)
        Py_RETURN_NONE;
    return PyUnicode_DecodeASCII((const char *)s->s, s->n, NULL);
}

static PyObject *
int_or_none(long long v, int set)
{
    if (!set)
        Py_RETURN_NONE;
    return PyLong_FromLongLong(v);
}

static PyObject *
answer(const Chunk *u, const Chunk *f)
{
    const Str *model = u->model.s ? &u->model : &f->model;
    const Str *id = u->id.s ? &u->id : &f->id;
    const Str *tier = u->tier.s ? &u->tier : &f->tier;
    PyObject *items[9] = {
        str_or_py_none(model),
        str_or_py_none(id),
        str_or_py_none(tier),
        str_or_py_none(&f->finish),
        PyLong_FromLongLong(u->prompt),
        int_or_none(u->cached, u->cached_set),
        int_or_none(u->write, u->write_set),
        PyLong_FromLongLong(u->completion),
        PyLong_FromLongLong(u->reasoning),
    };
    PyObject *out = NULL;
    for (int i = 0; i < 9; i++)
        if (items[i] == NULL)
            goto done;
    out = PyTuple_New(9);
    if (out == NULL)
        goto done;
    for (int i = 0; i < 9; i++) {
        PyTuple_SET_ITEM(out, i, items[i]);
        items[i] = NULL;
    }
done:
    for (int i = 0; i < 9; i++)
        Py_XDECREF(items[i]);
    return out;
}

/* The records `_parse_edges` reads: the head's (parts[0:h], at least `head_bytes`, h < n),
 * the tail's (parts[t:n], at least `tail_bytes` of them, t >= h), every one of them bytes, and
 * the first a JSON string of the short escapes whose first character starts an SSE event (not
 * in _NOT_SSE_START, not an escape). 0, or -1: Python's to judge. */
static int
edges(PyObject *parts, Py_ssize_t head_bytes, Py_ssize_t tail_bytes, Py_ssize_t *h_out,
      Py_ssize_t *t_out)
{
    if (!PyList_CheckExact(parts) || PyList_GET_SIZE(parts) == 0)
        return -1;
    Py_ssize_t n = PyList_GET_SIZE(parts), h = 1, size;
    PyObject *part = PyList_GET_ITEM(parts, 0);
    if (!PyBytes_CheckExact(part))
        return -1; /* anything else (its len(), its decoding): Python's to judge */
    size = PyBytes_GET_SIZE(part);
    while (h < n && size < head_bytes) {
        part = PyList_GET_ITEM(parts, h);
        if (!PyBytes_CheckExact(part))
            return -1;
        size += PyBytes_GET_SIZE(part);
        h++;
    }
    if (h >= n)
        return -1; /* a short body */
    const unsigned char *s;
    Py_ssize_t len;
    if (data_span(PyList_GET_ITEM(parts, 0), &s, &len) < 0 || len == 0)
        return -1;
    if (s[0] < 0x21 || s[0] > 0x7E || s[0] == '\\' || s[0] == '{' || s[0] == '[' || s[0] == '"')
        return -1;
    if (unescape(s, len, NULL) < 0)
        return -1;
    Py_ssize_t t = n;
    size = 0;
    while (t > h && size < tail_bytes) {
        t--;
        part = PyList_GET_ITEM(parts, t);
        if (!PyBytes_CheckExact(part))
            return -1;
        size += PyBytes_GET_SIZE(part);
    }
    *h_out = h;
    *t_out = t;
    return 0;
}

/* A decoding buffer: on the stack when it fits. */
typedef struct {
    unsigned char stack[STACK_BYTES];
    unsigned char *p;
    Py_ssize_t n;
} Buf;

/* parts[a:b] decoded into `buf` (their escapes undone, bytes as they are): 0, -1 (a record
 * not in the canonical shape or not a JSON string of the short escapes: Python's to judge),
 * or -2 (out of memory, the exception set). `buf_free` after either. */
static int
decode(PyObject *parts, Py_ssize_t a, Py_ssize_t b, Buf *buf)
{
    Py_ssize_t total = 0;
    buf->p = buf->stack;
    buf->n = 0;
    for (Py_ssize_t i = a; i < b; i++)
        total += PyBytes_GET_SIZE(PyList_GET_ITEM(parts, i));
    if (total > STACK_BYTES) {
        buf->p = PyMem_Malloc((size_t)total);
        if (buf->p == NULL) {
            buf->p = buf->stack;
            PyErr_NoMemory();
            return -2;
        }
    }
    for (Py_ssize_t i = a; i < b; i++) {
        const unsigned char *s;
        Py_ssize_t len;
        if (data_span(PyList_GET_ITEM(parts, i), &s, &len) < 0)
            return -1;
        Py_ssize_t w = unescape(s, len, buf->p + buf->n);
        if (w < 0)
            return -1;
        buf->n += w;
    }
    return 0;
}

static void
buf_free(Buf *buf)
{
    if (buf->p != buf->stack)
        PyMem_Free(buf->p);
}

static int
sizes(PyObject *const *args, Py_ssize_t nargs, const char *usage, Py_ssize_t *head_bytes,
      Py_ssize_t *tail_bytes)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, usage);
        return -1;
    }
    *head_bytes = PyLong_AsSsize_t(args[1]);
    if (*head_bytes == -1 && PyErr_Occurred())
        return -1;
    *tail_bytes = PyLong_AsSsize_t(args[2]);
    if (*tail_bytes == -1 && PyErr_Occurred())
        return -1;
    return 0;
}

static PyObject *
chat_tail(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    Py_ssize_t head_bytes, tail_bytes, h, t;
    if (sizes(args, nargs, "chat_tail(parts, head_bytes, tail_bytes)", &head_bytes,
              &tail_bytes) < 0)
        return NULL;
    PyObject *parts = args[0];
    if (edges(parts, head_bytes, tail_bytes, &h, &t) < 0)
        Py_RETURN_NONE;

    /* the tail, decoded (escapes only: bytes stay bytes; UTF-8 is not needed where it is read) */
    Buf tail;
    int r = decode(parts, t, PyList_GET_SIZE(parts), &tail);
    if (r < 0) {
        buf_free(&tail);
        if (r == -2)
            return NULL;
        Py_RETURN_NONE;
    }
    const unsigned char *buf = tail.p;
    Py_ssize_t m = tail.n;
    PyObject *out = NULL;

    /* tail.rsplit("\n\n", 4): "", "data: [DONE]", the usage chunk, the finish chunk, and
     * something before the finish chunk's boundary (so that `tail.find("\n\n", 1)` in
     * `_parse_edges` cuts at or before it) */
    Py_ssize_t j1 = rfind_blank(buf, m);
    if (j1 != m - 2)
        goto none;
    Py_ssize_t j2 = rfind_blank(buf, j1);
    if (j2 < 0 || j1 - j2 - 2 != 12 || memcmp(buf + j2 + 2, "data: [DONE]", 12) != 0)
        goto none;
    Py_ssize_t j3 = rfind_blank(buf, j2);
    if (j3 < 0)
        goto none;
    Py_ssize_t j4 = rfind_blank(buf, j3);
    if (j4 < 1)
        goto none;

    Chunk u, f;
    memset(&u, 0, sizeof u);
    memset(&f, 0, sizeof f);
    if (chunk(buf, j3 + 2, j2, usage_chunk, &u) < 0 || !u.choices_empty || !u.usage_seen ||
        !u.prompt_set || !u.completion_set || !u.reasoning_set)
        goto none;
    if (chunk(buf, j4 + 2, j3, finish_chunk, &f) < 0 || f.choices == 0 || f.finish.s == NULL)
        goto none;
    if ((u.model.s == NULL && f.model.s == NULL) || (u.id.s == NULL && f.id.s == NULL))
        goto none; /* parse_stream walks on, past the finish chunk */
    out = answer(&u, &f);
    goto done;
none:
    out = Py_None;
    Py_INCREF(out);
done:
    buf_free(&tail);
    return out;
}

/*
 * anthropic_edges(parts, head_bytes, tail_bytes) -> (message_start data, content_block_start
 *     data, message_delta data) | None
 *
 * What `_parse_edges` hands `anthropic.parse_tail` on its first try, cut as it cuts it: the
 * head (parts[0:h], decoded, up to its last blank line) split in its first two blocks, each an
 * `event:` line and one `data:` line; the tail (parts[t:], `tail_bytes` being the first tail
 * size tried) ending with `message_delta` and `message_stop` blocks, the delta's boundary
 * inside the tail. The three payloads as str (strict UTF-8: any other byte there is left to
 * Python); `anthropic.read_edges` decodes and reads them as `parse_tail` does. None for
 * anything else: `_parse_edges` decides.
 */
static PyObject *
anthropic_edges(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    Py_ssize_t head_bytes, tail_bytes, h, t;
    if (sizes(args, nargs, "anthropic_edges(parts, head_bytes, tail_bytes)", &head_bytes,
              &tail_bytes) < 0)
        return NULL;
    PyObject *parts = args[0];
    if (edges(parts, head_bytes, tail_bytes, &h, &t) < 0)
        Py_RETURN_NONE;
    Buf head, tail;
    PyObject *out = NULL;
    int r = decode(parts, 0, h, &head);
    if (r < 0) {
        buf_free(&head);
        if (r == -2)
            return NULL;
        Py_RETURN_NONE;
    }
    r = decode(parts, t, PyList_GET_SIZE(parts), &tail);
    if (r == -2)
        goto done;
    if (r < 0)
        goto none;

    /* the head: _cut_head, then head.split("\n\n", 2): its first two blocks */
    const unsigned char *hb = head.p;
    Py_ssize_t end = rfind_blank(hb, head.n);
    if (end < 0)
        goto none;
    Py_ssize_t i1 = find_blank(hb, 0, end + 2);
    Py_ssize_t i2 = i1 < 0 ? -1 : find_blank(hb, i1 + 2, end + 2);
    if (i2 < 0)
        goto none;
    Py_ssize_t sa = data_after(hb, 0, i1, "event: message_start\ndata: ");
    Py_ssize_t ba = data_after(hb, i1 + 2, i2, "event: content_block_start\ndata: ");
    if (sa < 0 || ba < 0)
        goto none;

    /* the tail: tail.rsplit("\n\n", 3): "", message_stop, message_delta, and something
     * before the delta's boundary (so that `_parse_edges`' cut is at or before it) */
    const unsigned char *tb = tail.p;
    Py_ssize_t m = tail.n;
    Py_ssize_t j1 = rfind_blank(tb, m);
    if (j1 != m - 2)
        goto none;
    Py_ssize_t j2 = rfind_blank(tb, j1);
    if (j2 < 0 || data_after(tb, j2 + 2, j1, "event: message_stop\ndata:") < 0)
        goto none;
    Py_ssize_t j3 = rfind_blank(tb, j2);
    if (j3 < 1)
        goto none;
    Py_ssize_t da = data_after(tb, j3 + 2, j2, "event: message_delta\ndata: ");
    if (da < 0)
        goto none;

    PyObject *start = PyUnicode_DecodeUTF8((const char *)hb + sa, i1 - sa, NULL);
    PyObject *block = start ? PyUnicode_DecodeUTF8((const char *)hb + ba, i2 - ba, NULL) : NULL;
    PyObject *delta = block ? PyUnicode_DecodeUTF8((const char *)tb + da, j2 - da, NULL) : NULL;
    if (delta != NULL)
        out = PyTuple_Pack(3, start, block, delta);
    Py_XDECREF(start);
    Py_XDECREF(block);
    Py_XDECREF(delta);
    if (out == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        PyErr_Clear(); /* not UTF-8 there: Python's to judge (replacement characters) */
        goto none;
    }
    goto done;
none:
    out = Py_None;
    Py_INCREF(out);
done:
    buf_free(&head);
    buf_free(&tail);
    return out;
}

static PyMethodDef methods[] = {
    {"chat_tail", (PyCFunction)(void (*)(void))chat_tail, METH_FASTCALL,
     "chat_tail(parts, head_bytes, tail_bytes) -> tuple | None: see sidecar/parse/tailscan.py."},
    {"anthropic_edges", (PyCFunction)(void (*)(void))anthropic_edges, METH_FASTCALL,
     "anthropic_edges(parts, head_bytes, tail_bytes) -> tuple | None: see tailscan.py."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "_tailscan",
    .m_doc = "A chat stream's usual end read from its raw body-log records (sidecar/parse/tailscan.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__tailscan(void)
{
    for (int c = 0x20; c < 256; c++)
        PLAIN[c] = c != '"' && c != '\\';
    ESC['"'] = '"';
    ESC['\\'] = '\\';
    ESC['/'] = '/';
    ESC['b'] = '\b';
    ESC['f'] = '\f';
    ESC['n'] = '\n';
    ESC['t'] = '\t';
    for (int c = 0x20; c < 0x7F; c++)
        STR[c] = c != '"' && c != '\\';
    return PyModule_Create(&module);
}
