/*
 * sidecar.parse._tailscan: the usual end of an OpenAI chat stream read straight from the raw
 * body-log records, in C (see sidecar/parse/tailscan.py); below it the same for Anthropic
 * (`anthropic_edges`, `anthropic_tail`) and Gemini (`gemini_tail`) streams.
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
 * while the parts are read. Every reader returns NULL with the exception set on an error: out
 * of memory, a wrong number of arguments or a size that is not an int (TypeError), a size
 * beyond Py_ssize_t (OverflowError); `parts` of another type give None.
 *
 * string_of(b) -> str | None: one JSON string (a request's joined escaped records) decoded
 * exactly as orjson decodes it, or None for anything it does not read (then orjson decides):
 * see its comment below.
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

/* ESC[c]: what the escape `\c` decodes to, 0 for one left to Python (`\u`, `\r`, invalid);
 * ESC_CR the same with `\r` (Gemini's CRLF framing, normalised after decoding: `gemini_tail`).
 * PLAIN[c]: a byte copied as it is into a JSON string (not a control character, quote or
 * backslash; any byte from 0x80: invalid UTF-8 is replaced the same wherever it stands). */
static unsigned char ESC[256];
static unsigned char ESC_CR[256];
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
 * `n` bytes: 16 at a time are copied before they are looked at, never past the `n`th), the
 * escapes as `esc` (ESC or ESC_CR) decodes them, up to the end or the first byte it does not
 * take (a quote, a control character, an escape `esc` leaves out): the number of bytes
 * written; `*read` is set to the bytes read (`n`: all of them). */
static Py_ssize_t
unescape_upto(const unsigned char *s, Py_ssize_t n, unsigned char *out, const unsigned char *esc,
              Py_ssize_t *read)
{
    Py_ssize_t i = 0, w = 0;
    for (;;) {
#if defined(__SSE2__)
        while (n - i >= 16) { /* w <= i: out[w:w+16] is within its n bytes */
            __m128i x = _mm_loadu_si128((const __m128i *)(s + i));
            if (out)
                _mm_storeu_si128((__m128i *)(out + w), x);
            int bits = specials(x, 0);
            if (!bits) {
                i += 16;
                w += 16;
                continue;
            }
            int k = __builtin_ctz((unsigned)bits);
            i += k;
            w += k;
            if (s[i] != '\\' || i + 1 >= n || !esc[s[i + 1]])
                break; /* the end: said below */
            if (out) /* the usual escape, taken here: a stream's text holds one every few bytes */
                out[w] = esc[s[i + 1]];
            w++;
            i += 2;
        }
#endif
        while (i < n && PLAIN[s[i]]) {
            if (out)
                out[w] = s[i];
            w++;
            i++;
        }
        if (i >= n || s[i] != '\\' || i + 1 >= n || !esc[s[i + 1]]) {
            *read = i;
            return w;
        }
        if (out)
            out[w] = esc[s[i + 1]];
        w++;
        i += 2;
    }
}

/* `unescape_upto` of all `n` bytes: the number of bytes written, or -1: not a JSON string of
 * those escapes. */
static Py_ssize_t
unescape(const unsigned char *s, Py_ssize_t n, unsigned char *out, const unsigned char *esc)
{
    Py_ssize_t read;
    Py_ssize_t w = unescape_upto(s, n, out, esc, &read);
    return read == n ? w : -1;
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
    int lenient; /* string values (not keys) read past as `text` reads them (Gemini) */
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

/* A string value read past at its opening quote, its contents any bytes but control
 * characters (UTF-8 or not: Python decodes invalid UTF-8 with replacement characters, and a
 * string read past is never returned), with the escapes orjson reads but `\u` (ESC_CR):
 * `unescape_upto`'s walk, checking only, which must stop at the closing quote. */
static int
text(J *j)
{
    const unsigned char *p = j->p + 1;
    Py_ssize_t r;
    unescape_upto(p, j->e - p, NULL, ESC_CR, &r);
    if (p + r >= j->e || p[r] != '"')
        return FAIL;
    j->p = p + r + 1;
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
        return j->lenient ? text(j) : string(j, &s);
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

/* An object's `key` as `as_str` reads it: into `*out` when a non-empty string (over a list's
 * objects, a chat choice's `finish_reason` or a Gemini candidate's `finishReason`: the last
 * one that has one, as `_finish_reason` walks reversed). */
typedef struct {
    const char *key;
    Str *out;
} Last;

static int
last_key(void *ctx, const Str *k, J *j)
{
    Last *l = ctx;
    if (k->n == (Py_ssize_t)strlen(l->key) && memcmp(k->s, l->key, (size_t)k->n) == 0) {
        Str r;
        if (str_or_none(j, &r) < 0)
            return FAIL;
        if (r.s != NULL)
            *l->out = r;
        return 0;
    }
    return value(j);
}

static int
last_of(void *ctx, const Str *k, J *j)
{
    (void)k;
    return at(j, '{') ? object(j, last_key, ctx) : value(j); /* not an object: read past */
}

static int
finish_chunk(void *ctx, const Str *k, J *j)
{
    Chunk *c = ctx;
    Last finish = {"finish_reason", &c->finish};
    if (KEY(k, "choices"))
        return at(j, '[') ? array(j, last_of, &finish, &c->choices) : FAIL;
    return common(c, k, j);
}

/* buf[a:b] an object read by `fn`, nothing after it but spaces (orjson.loads: a dict); its
 * string values read past as `text` reads them when `lenient`. */
static int
payload(const unsigned char *buf, Py_ssize_t a, Py_ssize_t b, KeyFn fn, void *ctx, int lenient)
{
    J j = {buf + a, buf + b, 0, lenient};
    ws(&j);
    if (!at(&j, '{') || object(&j, fn, ctx) < 0)
        return FAIL;
    ws(&j);
    return j.p == j.e ? 0 : FAIL;
}

/* The block `data: {...}` at buf[a:b]: `payload` of what follows `data: `. */
static int
chunk(const unsigned char *buf, Py_ssize_t a, Py_ssize_t b, KeyFn fn, void *ctx, int lenient)
{
    if (b - a < 7 || memcmp(buf + a, "data: {", 7) != 0)
        return FAIL;
    return payload(buf, a + 6, b, fn, ctx, lenient);
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

/* A tuple of the `n` new references in `items` (they are its own, or released: NULL with the
 * exception set, if one of them, or the tuple, could not be made). */
static PyObject *
tuple_of(PyObject **items, int n)
{
    PyObject *out = NULL;
    int ok = 1;
    for (int i = 0; i < n; i++)
        ok = ok && items[i] != NULL;
    if (ok && (out = PyTuple_New(n)) != NULL) {
        for (int i = 0; i < n; i++) {
            PyTuple_SET_ITEM(out, i, items[i]);
            items[i] = NULL;
        }
    }
    for (int i = 0; i < n; i++)
        Py_XDECREF(items[i]);
    return out;
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
    return tuple_of(items, 9);
}

/* The records `_parse_edges` reads: the head's (parts[0:h], at least `head_bytes`, h < n),
 * the tail's (parts[t:n], at least `tail_bytes` of them, t >= h), every one of them bytes, and
 * the first a JSON string of the short escapes whose first character starts an SSE event (not
 * in _NOT_SSE_START, not an escape). 0, or -1: Python's to judge. */
static int
edges(PyObject *parts, Py_ssize_t head_bytes, Py_ssize_t tail_bytes, Py_ssize_t *h_out,
      Py_ssize_t *t_out, const unsigned char *esc)
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
    if (unescape(s, len, NULL, esc) < 0)
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

/* `out`, or None when making it raised UnicodeDecodeError (not UTF-8 there: Python's to judge,
 * with replacement characters); any other error passed on (NULL). */
static PyObject *
none_if_not_utf8(PyObject *out)
{
    if (out == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    return out;
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
decode(PyObject *parts, Py_ssize_t a, Py_ssize_t b, Buf *buf, const unsigned char *esc)
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
        Py_ssize_t w = unescape(s, len, buf->p + buf->n, esc);
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

/* The start of `chat_tail` and `gemini_tail`: the arguments checked (`usage` the message), the
 * records' edges, the tail's records decoded into `tail` with the escapes of `esc` (bytes stay
 * bytes; UTF-8 is not needed where it is read). 1: read on (`buf_free` after); 0: None; -1:
 * an error (the exception set). */
static int
tail_of(PyObject *const *args, Py_ssize_t nargs, const char *usage, const unsigned char *esc,
        Buf *tail)
{
    Py_ssize_t head_bytes, tail_bytes, h, t;
    if (sizes(args, nargs, usage, &head_bytes, &tail_bytes) < 0)
        return -1;
    if (edges(args[0], head_bytes, tail_bytes, &h, &t, esc) < 0)
        return 0;
    int r = decode(args[0], t, PyList_GET_SIZE(args[0]), tail, esc);
    if (r < 0) {
        buf_free(tail);
        return r == -2 ? -1 : 0;
    }
    return 1;
}

static PyObject *
chat_tail(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    Buf tail;
    int go = tail_of(args, nargs, "chat_tail(parts, head_bytes, tail_bytes)", ESC, &tail);
    if (go < 0)
        return NULL;
    if (go == 0)
        Py_RETURN_NONE;
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
    if (chunk(buf, j3 + 2, j2, usage_chunk, &u, 0) < 0 || !u.choices_empty || !u.usage_seen ||
        !u.prompt_set || !u.completion_set || !u.reasoning_set)
        goto none;
    if (chunk(buf, j4 + 2, j3, finish_chunk, &f, 0) < 0 || f.choices == 0 || f.finish.s == NULL)
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
/* The three payloads `anthropic_edges` cuts, the arguments checked (`usage` the message): the
 * decoded head and tail in `head` and `tail` (`buf_free` both after any answer), the payloads'
 * spans in `span` (start, end pairs: the message_start and content_block_start payloads in the
 * head, the message_delta payload in the tail). 0, -1 (not this shape: Python's to judge) or
 * -2 (an error: the exception set). */
static int
anthropic_cut(PyObject *const *args, Py_ssize_t nargs, const char *usage, Buf *head, Buf *tail,
              Py_ssize_t span[6])
{
    Py_ssize_t head_bytes, tail_bytes, h, t;
    head->p = head->stack;
    tail->p = tail->stack;
    if (sizes(args, nargs, usage, &head_bytes, &tail_bytes) < 0)
        return -2;
    PyObject *parts = args[0];
    if (edges(parts, head_bytes, tail_bytes, &h, &t, ESC) < 0)
        return -1;
    int r = decode(parts, 0, h, head, ESC);
    if (r < 0)
        return r;
    r = decode(parts, t, PyList_GET_SIZE(parts), tail, ESC);
    if (r < 0)
        return r;

    /* the head: _cut_head, then head.split("\n\n", 2): its first two blocks */
    const unsigned char *hb = head->p;
    Py_ssize_t end = rfind_blank(hb, head->n);
    if (end < 0)
        return -1;
    Py_ssize_t i1 = find_blank(hb, 0, end + 2);
    Py_ssize_t i2 = i1 < 0 ? -1 : find_blank(hb, i1 + 2, end + 2);
    if (i2 < 0)
        return -1;
    Py_ssize_t sa = data_after(hb, 0, i1, "event: message_start\ndata: ");
    Py_ssize_t ba = data_after(hb, i1 + 2, i2, "event: content_block_start\ndata: ");
    if (sa < 0 || ba < 0)
        return -1;

    /* the tail: tail.rsplit("\n\n", 3): "", message_stop, message_delta, and something
     * before the delta's boundary (so that `_parse_edges`' cut is at or before it) */
    const unsigned char *tb = tail->p;
    Py_ssize_t m = tail->n;
    Py_ssize_t j1 = rfind_blank(tb, m);
    if (j1 != m - 2)
        return -1;
    Py_ssize_t j2 = rfind_blank(tb, j1);
    if (j2 < 0 || data_after(tb, j2 + 2, j1, "event: message_stop\ndata:") < 0)
        return -1;
    Py_ssize_t j3 = rfind_blank(tb, j2);
    if (j3 < 1)
        return -1;
    Py_ssize_t da = data_after(tb, j3 + 2, j2, "event: message_delta\ndata: ");
    if (da < 0)
        return -1;
    span[0] = sa, span[1] = i1, span[2] = ba, span[3] = i2, span[4] = da, span[5] = j2;
    return 0;
}

static PyObject *
anthropic_edges(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    Py_ssize_t span[6];
    Buf head, tail;
    PyObject *out = NULL;
    int r = anthropic_cut(args, nargs, "anthropic_edges(parts, head_bytes, tail_bytes)", &head,
                          &tail, span);
    if (r < 0) {
        out = r == -1 ? Py_NewRef(Py_None) : NULL;
        goto done;
    }
    const char *hb = (const char *)head.p, *tb = (const char *)tail.p;
    PyObject *start = PyUnicode_DecodeUTF8(hb + span[0], span[1] - span[0], NULL);
    PyObject *block = start ? PyUnicode_DecodeUTF8(hb + span[2], span[3] - span[2], NULL) : NULL;
    PyObject *delta = block ? PyUnicode_DecodeUTF8(tb + span[4], span[5] - span[4], NULL) : NULL;
    if (delta != NULL)
        out = PyTuple_Pack(3, start, block, delta);
    Py_XDECREF(start);
    Py_XDECREF(block);
    Py_XDECREF(delta);
    out = none_if_not_utf8(out);
done:
    buf_free(&head);
    buf_free(&tail);
    return out;
}

/*
 * anthropic_tail(parts, head_bytes, tail_bytes) -> (model, id, finish_reason, thinking,
 *     service_tier, input, cache_read, cache_write, split, ephemeral_5m, ephemeral_1h, output,
 *     thinking_tokens) | None
 *
 * `anthropic_edges` and `anthropic.read_edges` in one: the three payloads cut as there, each
 * an object in the JSON subset (string values read past as `text` reads them), read as
 * `read_edges` reads them: the message's model, id and stop reason (the delta's stop reason
 * wins when it is a non-empty string: `finish_reason`), whether the first block is a thinking
 * block, and the message's usage merged with the delta's (`merge_usage`: a value of the
 * delta's that is not null wins, a nested object whole), as `usage_from` reads it: the counts
 * plain integers (0: null or absent), `split` whether `cache_creation` is a non-empty object.
 * None for anything else (a count of another type, `iterations`, a message that is not an
 * object, no usage on either side...): `_parse_edges` decides.
 */

/* One usage value as the merge sees it: `set` when present and not null (its count, or
 * string); absent and null are alike (`merge_usage` skips a null, `Counts` reads it 0). */
typedef struct {
    int set;
    long long v; /* a count */
    Str s;       /* a string, as_str (s NULL: not a non-empty string) */
} Val;

typedef struct {
    Val input, read, write, output, tier, m5, h1, thinking;
    int split_set, split_keys; /* cache_creation: set, its keys (an object's: else 0) */
    int details_set;           /* output_tokens_details: set */
    int keys;                  /* the usage's keys (`if start_usage or ...`) */
    int iterations;
} AUsage;

typedef struct {
    Str model, id, stop, delta_stop, block_type;
    int message; /* message_start's `message` an object */
    AUsage start, delta;
} Anthropic;

/* A count (an integer or null; anything else fails: Counts' checked path) into `v`. */
static int
val_count(J *j, Val *v)
{
    return count(j, &v->v, &v->set, 1);
}

static int
val_str(J *j, Val *v)
{
    if (at(j, 'n'))
        return literal(j, "null", 4);
    v->set = 1;
    return str_or_none(j, &v->s);
}

static int
split_key(void *ctx, const Str *k, J *j)
{
    AUsage *u = ctx;
    u->split_keys++;
    if (KEY(k, "ephemeral_5m_input_tokens"))
        return val_count(j, &u->m5);
    if (KEY(k, "ephemeral_1h_input_tokens"))
        return val_count(j, &u->h1);
    return value(j);
}

static int
details_key(void *ctx, const Str *k, J *j)
{
    AUsage *u = ctx;
    if (KEY(k, "thinking_tokens"))
        return val_count(j, &u->thinking);
    return value(j);
}

/* An object value: `fn` reads it (`*set`), null (not set), or another value read past (`*set`;
 * `as_dict` of it is empty: the counts `fn` reads stay 0). */
static int
nested(J *j, KeyFn fn, void *ctx, int *set)
{
    if (at(j, 'n'))
        return literal(j, "null", 4);
    *set = 1;
    return at(j, '{') ? object(j, fn, ctx) : value(j);
}

static int
usage_key(void *ctx, const Str *k, J *j)
{
    AUsage *u = ctx;
    u->keys++;
    if (KEY(k, "input_tokens"))
        return val_count(j, &u->input);
    if (KEY(k, "cache_read_input_tokens"))
        return val_count(j, &u->read);
    if (KEY(k, "cache_creation_input_tokens"))
        return val_count(j, &u->write);
    if (KEY(k, "output_tokens"))
        return val_count(j, &u->output);
    if (KEY(k, "service_tier"))
        return val_str(j, &u->tier);
    if (KEY(k, "cache_creation"))
        return nested(j, split_key, u, &u->split_set);
    if (KEY(k, "output_tokens_details"))
        return nested(j, details_key, u, &u->details_set);
    if (KEY(k, "iterations"))
        u->iterations = 1; /* billed per iteration: Python's to read */
    return value(j);
}

/* A usage object (`as_dict`: anything else is no usage). */
static int
usage_value(J *j, AUsage *u)
{
    return at(j, '{') ? object(j, usage_key, u) : value(j);
}

static int
message_key(void *ctx, const Str *k, J *j)
{
    Anthropic *a = ctx;
    if (KEY(k, "model"))
        return str_or_none(j, &a->model);
    if (KEY(k, "id"))
        return str_or_none(j, &a->id);
    if (KEY(k, "stop_reason"))
        return str_or_none(j, &a->stop);
    if (KEY(k, "usage"))
        return usage_value(j, &a->start);
    return value(j);
}

static int
start_key(void *ctx, const Str *k, J *j)
{
    Anthropic *a = ctx;
    if (KEY(k, "message")) {
        a->message = at(j, '{');
        return a->message ? object(j, message_key, a) : value(j);
    }
    return value(j);
}

static int
block_key(void *ctx, const Str *k, J *j)
{
    Anthropic *a = ctx;
    Last type = {"type", &a->block_type};
    if (KEY(k, "content_block"))
        return last_of(&type, NULL, j);
    return value(j);
}

static int
delta_key(void *ctx, const Str *k, J *j)
{
    Anthropic *a = ctx;
    Last stop = {"stop_reason", &a->delta_stop};
    if (KEY(k, "delta"))
        return last_of(&stop, NULL, j);
    if (KEY(k, "usage"))
        return usage_value(j, &a->delta);
    return value(j);
}

/* merge_usage of one value: the delta's when not null (present), else the message's. */
static const Val *
merged(const Val *start, const Val *delta)
{
    return delta->set ? delta : start;
}

static PyObject *
anthropic_tail(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    Py_ssize_t span[6];
    Buf head, tail;
    PyObject *out = NULL;
    int r = anthropic_cut(args, nargs, "anthropic_tail(parts, head_bytes, tail_bytes)", &head,
                          &tail, span);
    if (r < 0) {
        out = r == -1 ? Py_NewRef(Py_None) : NULL;
        goto done;
    }
    Anthropic a;
    memset(&a, 0, sizeof a);
    if (payload(head.p, span[0], span[1], start_key, &a, 1) < 0 ||
        payload(head.p, span[2], span[3], block_key, &a, 1) < 0 ||
        payload(tail.p, span[4], span[5], delta_key, &a, 1) < 0)
        goto none;
    const AUsage *s = &a.start, *d = &a.delta;
    if (!a.message || s->iterations || d->iterations || (s->keys == 0 && d->keys == 0))
        goto none;
    /* the merged usage's cache_creation and output_tokens_details: the delta's when not null */
    const AUsage *sp = d->split_set ? d : s;
    const AUsage *dt = d->details_set ? d : s;
    int split = sp->split_keys > 0; /* a non-empty object (no key twice: read once) */
    const Val *tier = merged(&s->tier, &d->tier);
    int thinking = a.block_type.s != NULL &&
                   ((a.block_type.n == 8 && memcmp(a.block_type.s, "thinking", 8) == 0) ||
                    (a.block_type.n == 17 && memcmp(a.block_type.s, "redacted_thinking", 17) == 0));
    Str finish = a.delta_stop.s != NULL ? a.delta_stop : a.stop;
    /* a nested value that is no object, null or absent holds no counts: 0 (as_dict) */
    long long m5 = sp->m5.v, h1 = sp->h1.v, think = dt->thinking.v;
    PyObject *items[13] = {
        str_or_py_none(&a.model),
        str_or_py_none(&a.id),
        str_or_py_none(&finish),
        PyBool_FromLong(thinking),
        str_or_py_none(tier->set ? &tier->s : &(Str){NULL, 0}),
        PyLong_FromLongLong(merged(&s->input, &d->input)->v),
        PyLong_FromLongLong(merged(&s->read, &d->read)->v),
        PyLong_FromLongLong(merged(&s->write, &d->write)->v),
        PyBool_FromLong(split),
        PyLong_FromLongLong(m5),
        PyLong_FromLongLong(h1),
        PyLong_FromLongLong(merged(&s->output, &d->output)->v),
        PyLong_FromLongLong(think),
    };
    out = tuple_of(items, 13);
    goto done;
none:
    out = Py_None;
    Py_INCREF(out);
done:
    buf_free(&head);
    buf_free(&tail);
    return out;
}

/*
 * gemini_tail(parts, head_bytes, tail_bytes) -> (model, id, finish_reason, service_tier,
 *     traffic_type, prompt, tool_use_prompt, cached, candidates, thoughts) | None
 *
 * What `_parse_edges` then `gemini.parse_tail` read on their first try from a Gemini SSE
 * stream whose last event says it all: the tail (parts[t:], `tail_bytes` being the first tail
 * size tried) decoded with its `\r` escapes, newlines normalised as `normalise_newlines` does,
 * cut after its first blank line from its second character on, newlines stripped; its last
 * block (as `str.rsplit("\n\n", 2)` cuts it, followed by exactly one blank line) one `data: `
 * line without `"error"` or `"thought"` in it, its object in the JSON subset (but that string
 * values read past may hold any text: `text`), with usage counts (`has_counts`), a finish
 * reason, `modelVersion` and `responseId`. The strings as `as_str` gives them (None: not a
 * non-empty string; printable ASCII only), the counts as `Counts` reads them (an integer, or 0
 * for null or absent; any other value: None, Python's to judge). `gemini.read_tail` fills the
 * `ParsedBody` from them. None for anything else: `_parse_edges` decides.
 */
typedef struct {
    Str model, id, finish, tier, traffic;
    int counts; /* has_counts: one of the six count keys seen */
    long long prompt, tool, cached, candidates, thoughts;
} Gemini;

static int
gemini_count(J *j, long long *v)
{
    int set;
    if (count(j, v, &set, 1) < 0)
        return FAIL;
    if (!set)
        *v = 0; /* null: Counts reads 0 */
    return 0;
}

static int
gemini_usage(void *ctx, const Str *k, J *j)
{
    Gemini *g = ctx;
    if (KEY(k, "promptTokenCount"))
        return g->counts = 1, gemini_count(j, &g->prompt);
    if (KEY(k, "candidatesTokenCount"))
        return g->counts = 1, gemini_count(j, &g->candidates);
    if (KEY(k, "thoughtsTokenCount"))
        return g->counts = 1, gemini_count(j, &g->thoughts);
    if (KEY(k, "toolUsePromptTokenCount"))
        return g->counts = 1, gemini_count(j, &g->tool);
    if (KEY(k, "cachedContentTokenCount"))
        return g->counts = 1, gemini_count(j, &g->cached);
    if (KEY(k, "totalTokenCount"))
        return g->counts = 1, value(j); /* has_counts only */
    if (KEY(k, "serviceTier"))
        return str_or_none(j, &g->tier);
    if (KEY(k, "trafficType"))
        return str_or_none(j, &g->traffic);
    return value(j);
}

static int
gemini_chunk(void *ctx, const Str *k, J *j)
{
    Gemini *g = ctx;
    Last finish = {"finishReason", &g->finish};
    if (KEY(k, "candidates"))
        return at(j, '[') ? array(j, last_of, &finish, NULL) : value(j); /* not a list: none */
    if (KEY(k, "usageMetadata"))
        return at(j, '{') ? object(j, gemini_usage, g) : value(j); /* not a dict: no counts */
    if (KEY(k, "modelVersion"))
        return str_or_none(j, &g->model);
    if (KEY(k, "responseId"))
        return str_or_none(j, &g->id);
    return value(j);
}

/* Whether `needle` occurs in buf[a:b]. */
static int
contains(const unsigned char *buf, Py_ssize_t a, Py_ssize_t b, const char *needle)
{
    size_t n = strlen(needle);
    const unsigned char *p = buf + a, *e = buf + b;
    while ((size_t)(e - p) >= n) {
        p = memchr(p, needle[0], (size_t)(e - p) - n + 1);
        if (p == NULL)
            return 0;
        if (memcmp(p, needle, n) == 0)
            return 1;
        p++;
    }
    return 0;
}

static PyObject *
gemini_tail(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    Buf tail;
    int go = tail_of(args, nargs, "gemini_tail(parts, head_bytes, tail_bytes)", ESC_CR, &tail);
    if (go < 0)
        return NULL;
    if (go == 0)
        Py_RETURN_NONE;
    unsigned char *buf = tail.p;
    PyObject *out = NULL;

    /* normalise_newlines, in place: "\r\n" and a lone "\r" become "\n" */
    Py_ssize_t m = 0;
    for (Py_ssize_t i = 0; i < tail.n; i++) {
        if (buf[i] != '\r')
            buf[m++] = buf[i];
        else {
            buf[m++] = '\n';
            if (i + 1 < tail.n && buf[i + 1] == '\n')
                i++;
        }
    }

    /* `_parse_edges`: tail[tail.find("\n\n", 1) + 2 :].lstrip("\n"), not empty */
    Py_ssize_t cut = find_blank(buf, 1, m);
    if (cut < 0)
        goto none;
    Py_ssize_t r0 = cut + 2;
    while (r0 < m && buf[r0] == '\n')
        r0++;
    if (r0 >= m)
        goto none;
    /* `parse_tail`: rsplit("\n\n", 2): the last piece empty, the block before it */
    Py_ssize_t j1 = rfind_blank(buf, m);
    if (j1 != m - 2 || j1 < r0)
        goto none;
    Py_ssize_t j2 = rfind_blank(buf, j1);
    Py_ssize_t bs = j2 >= r0 ? j2 + 2 : r0;
    if (memchr(buf + bs, '\n', (size_t)(j1 - bs)) != NULL || contains(buf, bs, j1, "\"error\"") ||
        contains(buf, bs, j1, "\"thought\""))
        goto none;
    Gemini g;
    memset(&g, 0, sizeof g);
    if (chunk(buf, bs, j1, gemini_chunk, &g, 1) < 0 || !g.counts || g.finish.s == NULL ||
        g.model.s == NULL || g.id.s == NULL)
        goto none;

    PyObject *items[10] = {
        str_or_py_none(&g.model),
        str_or_py_none(&g.id),
        str_or_py_none(&g.finish),
        str_or_py_none(&g.tier),
        str_or_py_none(&g.traffic),
        PyLong_FromLongLong(g.prompt),
        PyLong_FromLongLong(g.tool),
        PyLong_FromLongLong(g.cached),
        PyLong_FromLongLong(g.candidates),
        PyLong_FromLongLong(g.thoughts),
    };
    out = tuple_of(items, 10);
    goto done;
none:
    out = Py_None;
    Py_INCREF(out);
done:
    buf_free(&tail);
    return out;
}

/* ------------------------------------------------------------------ a whole body */

/* The value of the hex digit `c`, or -1. */
static inline int
hex_digit(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* string_of(b) -> str | None: the JSON string `b` (a quote, its escaped contents, a quote:
 * body.py's joined records) as `orjson.loads(b)` reads it, or None where this may differ:
 * anything but bytes, a quote or a control character in the contents, an escape orjson
 * refuses, a `\u` escape of a surrogate (a pair or not), invalid UTF-8 (all of which orjson
 * reads its own way, or refuses: the caller asks it then). The escapes are undone into a
 * buffer and the UTF-8 decoded once (strict). */
static PyObject *
string_of(PyObject *self, PyObject *arg)
{
    if (!PyBytes_CheckExact(arg))
        Py_RETURN_NONE;
    const unsigned char *s = (const unsigned char *)PyBytes_AS_STRING(arg);
    Py_ssize_t n = PyBytes_GET_SIZE(arg);
    if (n < 2 || s[0] != '"' || s[n - 1] != '"')
        Py_RETURN_NONE;
    s++;
    n -= 2;
    Buf buf;
    buf.p = buf.stack;
    if (n > STACK_BYTES) {
        buf.p = PyMem_Malloc((size_t)n);
        if (buf.p == NULL)
            return PyErr_NoMemory();
    }
    PyObject *out = NULL;
    Py_ssize_t i = 0, w = 0; /* w <= i: an escape never writes more than it reads */
    for (;;) {
        Py_ssize_t read;
        w += unescape_upto(s + i, n - i, buf.p + w, ESC_CR, &read);
        i += read;
        if (i >= n)
            break;
        if (s[i] != '\\' || n - i < 6 || s[i + 1] != 'u')
            goto none;
        int d0 = hex_digit(s[i + 2]), d1 = hex_digit(s[i + 3]);
        int d2 = hex_digit(s[i + 4]), d3 = hex_digit(s[i + 5]);
        if ((d0 | d1 | d2 | d3) < 0)
            goto none;
        unsigned cp = (unsigned)(d0 << 12 | d1 << 8 | d2 << 4 | d3);
        if (cp >= 0xD800 && cp <= 0xDFFF)
            goto none;
        if (cp < 0x80) {
            buf.p[w++] = (unsigned char)cp;
        } else if (cp < 0x800) {
            buf.p[w++] = (unsigned char)(0xC0 | cp >> 6);
            buf.p[w++] = (unsigned char)(0x80 | (cp & 0x3F));
        } else {
            buf.p[w++] = (unsigned char)(0xE0 | cp >> 12);
            buf.p[w++] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
            buf.p[w++] = (unsigned char)(0x80 | (cp & 0x3F));
        }
        i += 6;
    }
    out = none_if_not_utf8(PyUnicode_DecodeUTF8((const char *)buf.p, w, NULL));
    goto done;
none:
    out = Py_None;
    Py_INCREF(out);
done:
    buf_free(&buf);
    return out;
}

static PyMethodDef methods[] = {
    {"chat_tail", (PyCFunction)(void (*)(void))chat_tail, METH_FASTCALL,
     "chat_tail(parts, head_bytes, tail_bytes) -> tuple | None: see sidecar/parse/tailscan.py."},
    {"anthropic_edges", (PyCFunction)(void (*)(void))anthropic_edges, METH_FASTCALL,
     "anthropic_edges(parts, head_bytes, tail_bytes) -> tuple | None: see tailscan.py."},
    {"anthropic_tail", (PyCFunction)(void (*)(void))anthropic_tail, METH_FASTCALL,
     "anthropic_tail(parts, head_bytes, tail_bytes) -> tuple | None: see tailscan.py."},
    {"gemini_tail", (PyCFunction)(void (*)(void))gemini_tail, METH_FASTCALL,
     "gemini_tail(parts, head_bytes, tail_bytes) -> tuple | None: see tailscan.py."},
    {"string_of", string_of, METH_O,
     "string_of(b) -> str | None: the JSON string b as orjson.loads(b) reads it, or None."},
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
    memcpy(ESC_CR, ESC, sizeof ESC);
    ESC_CR['r'] = '\r';
    for (int c = 0x20; c < 0x7F; c++)
        STR[c] = c != '"' && c != '\\';
    return PyModule_Create(&module);
}
