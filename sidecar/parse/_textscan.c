/*
 * sidecar.parse._textscan: the text mode's walk over a stream's events, in C (calibration
 * samples and estimates: `want_text`, see sidecar/parse/textscan.py).
 *
 * chat(text, out, slow) -> bool
 * gemini(text, out, slow) -> bool
 * anthropic(text, blocks, slow) -> True
 *
 * `text` is a stream's SSE text, newlines normalised (`Chunks.text`). Each function frames it
 * into blocks exactly as `Chunks._blocks` does (`text.split("\n\n")`, empty pieces skipped,
 * leading newlines stripped) and reads each event the way the provider's Python walk does:
 *
 *   chat       openai_chat._texts on every event's object: the strings of each choice's
 *              `delta` (content, refusal, reasoning_content, reasoning, in that order) appended
 *              to `out`; returns whether one was content or refusal (answer text);
 *   gemini     gemini._texts: each part's `text` appended to `out` unless the part is a
 *              thought (`"thought": true`); returns whether a part was a thought;
 *   anthropic  anthropic._stream_blocks: a `content_block_start` sets `blocks[index]` to
 *              (type, name, [its text]), a `content_block_delta` appends its text, thinking or
 *              partial_json to `blocks.setdefault(index, ("text", None, []))[2]`; events of
 *              any other `event:` name are neither decoded nor counted.
 *
 * It reads only the events it can prove it reads as Python would: one `data: ` line (or, for
 * Anthropic, `event: NAME` then one `data: ` line) whose payload is a JSON object in a subset of
 * JSON that orjson surely accepts (no exponent, at most 18 digits per number, no control
 * character or surrogate in a string, \u escapes that make whole characters, keys without
 * escapes, at most MAX_DEPTH levels), with none of the rarer shapes (a key it reads given
 * twice, a tool call, a `message`, content given as a list, a non-empty tool `input`, ...).
 * Any other block is
 * handed to `slow(at, block)`, `at` being the block's offset in `text` as `Chunks._blocks`
 * gives it: the Python walk for that one event (it decodes it, counts it if it is malformed, and
 * returns the event's flag), so the order of the pieces and every count stay Python's.
 * A payload that `[DONE]` starts or that is empty is skipped, as `forward_kinds` skips it.
 *
 * The text is read in its own representation (1, 2 or 4 bytes a character, no copy); a string
 * holding a surrogate (bad bytes decoded with surrogateescape), which orjson refuses, goes to
 * `slow`. Errors (memory, or one `slow` raised) return NULL with the exception set.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define MAX_DEPTH 64  /* deeper payloads go to `slow` (orjson allows 1024) */
#define MAX_DIGITS 18 /* a longer number goes to `slow` (orjson reads any, or refuses) */
#define MAX_SPANS 64  /* strings kept from one event before it is handed to `slow` */

/* ------------------------------------------------------------------ the JSON subset */

typedef struct {
    Py_ssize_t a, b; /* the string's contents, between its quotes */
    int esc;         /* holds a backslash */
} Span;

/* A payload: characters of the str's own kind (1, 2 or 4 bytes each), read with AT. */
typedef struct {
    const void *d;
    int kind;
    Py_ssize_t n;
    Py_ssize_t i; /* the position read so far */
    int depth;
} P;

#define AT(p, at) PyUnicode_READ((p)->kind, (p)->d, (at))

/* Results: OK, or BAIL (not in the subset, or a shape this walk leaves to Python). */
#define OK 0
#define BAIL (-1)

/* Whitespace but newlines: a payload read here is one line (a newline ends the block's data
 * line, or makes it a block of several lines, which `parse_block` reads: Python's part). */
static inline void
ws(P *p)
{
    while (p->i < p->n) {
        Py_UCS4 c = AT(p, p->i);
        if (c != ' ' && c != '\t' && c != '\r')
            return;
        p->i++;
    }
}

static inline int
hex4(const P *p, Py_ssize_t at, unsigned *v)
{
    unsigned r = 0;
    for (int k = 0; k < 4; k++) {
        Py_UCS4 c = AT(p, at + k);
        r <<= 4;
        if (c >= '0' && c <= '9')
            r |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            r |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            r |= (unsigned)(c - 'A' + 10);
        else
            return 0;
    }
    *v = r;
    return 1;
}

/* SPECIAL[c]: a character that ends a run of plain string characters below 256 (a quote, a
 * backslash, a control character). Above 255 only a surrogate does: orjson refuses a str
 * holding one. */
static unsigned char SPECIAL[256];

#define WIDE_SPECIAL(c) ((c) < 256 ? SPECIAL[c] : ((c) - 0xD800u) < 0x800u)

/* The end of the run of plain characters from `i`, one loop per kind, four at a time. */
#define PLAIN_RUN(T, IS_SPECIAL)                                                                  \
    do {                                                                                          \
        const T *d_ = (const T *)p->d;                                                            \
        while (i + 4 <= n && !(IS_SPECIAL(d_[i]) | IS_SPECIAL(d_[i + 1]) |                        \
                               IS_SPECIAL(d_[i + 2]) | IS_SPECIAL(d_[i + 3])))                    \
            i += 4;                                                                               \
        while (i < n && !IS_SPECIAL(d_[i]))                                                       \
            i++;                                                                                  \
    } while (0)

#define NARROW_SPECIAL(c) SPECIAL[c]

/* A string at p->i (its opening quote); its contents' span. Escapes must be JSON's, and a \u
 * escape of a surrogate must be a high one followed by a \u low one. */
static int
string(P *p, Span *sp)
{
    Py_ssize_t n = p->n, i = p->i + 1;
    int esc = 0;
    sp->a = i;
    for (;;) {
        if (p->kind == PyUnicode_1BYTE_KIND)
            PLAIN_RUN(Py_UCS1, NARROW_SPECIAL);
        else if (p->kind == PyUnicode_2BYTE_KIND)
            PLAIN_RUN(Py_UCS2, WIDE_SPECIAL);
        else
            PLAIN_RUN(Py_UCS4, WIDE_SPECIAL);
        if (i >= n)
            return BAIL;
        Py_UCS4 c = AT(p, i);
        if (c == '"')
            break;
        if (c != '\\')
            return BAIL; /* a control character or a surrogate: orjson refuses them */
        esc = 1;
        if (i + 1 >= n)
            return BAIL;
        switch (AT(p, i + 1)) {
        case '"':
        case '\\':
        case '/':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
            i += 2;
            break;
        case 'u': {
            unsigned v, w;
            if (i + 6 > n || !hex4(p, i + 2, &v))
                return BAIL;
            i += 6;
            if (v >= 0xDC00 && v <= 0xDFFF)
                return BAIL; /* a low surrogate alone */
            if (v >= 0xD800 && v <= 0xDBFF) {
                if (i + 6 > n || AT(p, i) != '\\' || AT(p, i + 1) != 'u' || !hex4(p, i + 2, &w) ||
                    w < 0xDC00 || w > 0xDFFF)
                    return BAIL; /* a high surrogate without its low one */
                i += 6;
            }
            break;
        }
        default:
            return BAIL;
        }
    }
    sp->b = i;
    sp->esc = esc;
    p->i = i + 1;
    return OK;
}

/* A number at p->i: -?(0|[1-9][0-9]*)(\.[0-9]+)?, at most MAX_DIGITS digits, no exponent.
 * `*integer` says whether it had no fraction, `*value` its value then. */
static int
number(P *p, int *integer, long long *value)
{
    Py_ssize_t n = p->n, i = p->i;
    int neg = 0, digits = 0;
    long long v = 0;
    if (i < n && AT(p, i) == '-') {
        neg = 1;
        i++;
    }
    if (i >= n || AT(p, i) < '0' || AT(p, i) > '9')
        return BAIL;
    if (AT(p, i) == '0') {
        i++;
        digits = 1;
        if (i < n && AT(p, i) >= '0' && AT(p, i) <= '9')
            return BAIL; /* a leading zero */
    }
    else {
        while (i < n && AT(p, i) >= '0' && AT(p, i) <= '9') {
            if (++digits > MAX_DIGITS)
                return BAIL;
            v = v * 10 + (AT(p, i) - '0');
            i++;
        }
    }
    *integer = 1;
    if (i < n && AT(p, i) == '.') {
        i++;
        *integer = 0;
        if (i >= n || AT(p, i) < '0' || AT(p, i) > '9')
            return BAIL;
        while (i < n && AT(p, i) >= '0' && AT(p, i) <= '9') {
            if (++digits > MAX_DIGITS)
                return BAIL;
            i++;
        }
    }
    if (i < n && (AT(p, i) == 'e' || AT(p, i) == 'E'))
        return BAIL; /* 1e999 is refused, 1e5 is not: Python decides */
    *value = neg ? -v : v;
    p->i = i;
    return OK;
}

static int
literal(P *p, const char *word, Py_ssize_t len)
{
    if (p->n - p->i < len)
        return BAIL;
    for (Py_ssize_t j = 0; j < len; j++) {
        if (AT(p, p->i + j) != (Py_UCS4)word[j])
            return BAIL;
    }
    p->i += len;
    return OK;
}

static int value(P *p);

/* Objects and arrays are walked with these (`close` their closing bracket): `open` at the
 * opening one (1: a first member follows, 0: empty and closed), `more` after a member (1:
 * another follows, 0: closed). */
static inline int
open_(P *p, Py_UCS4 close)
{
    if (++p->depth > MAX_DEPTH)
        return BAIL;
    p->i++;
    ws(p);
    if (p->i < p->n && AT(p, p->i) == close) {
        p->i++;
        p->depth--;
        return 0;
    }
    return 1;
}

static inline int
more_(P *p, Py_UCS4 close)
{
    ws(p);
    if (p->i >= p->n)
        return BAIL;
    Py_UCS4 c = AT(p, p->i);
    if (c == ',') {
        p->i++;
        ws(p);
        return 1;
    }
    if (c == close) {
        p->i++;
        p->depth--;
        return 0;
    }
    return BAIL;
}

#define open_obj(p) open_(p, '}')
#define more_obj(p) more_(p, '}')
#define open_arr(p) open_(p, ']')
#define more_arr(p) more_(p, ']')

/* A member's key, then its colon; the value's first character is at p->i. A key with an
 * escape could spell a name this walk reads: not in the subset. */
static int
key(P *p, Span *k)
{
    ws(p);
    if (p->i >= p->n || AT(p, p->i) != '"' || string(p, k) != OK || k->esc)
        return BAIL;
    ws(p);
    if (p->i >= p->n || AT(p, p->i) != ':')
        return BAIL;
    p->i++;
    ws(p);
    return p->i < p->n ? OK : BAIL;
}

static inline int
is_key(const P *p, const Span *k, const char *name)
{
    Py_ssize_t len = (Py_ssize_t)strlen(name);
    if (k->b - k->a != len)
        return 0;
    for (Py_ssize_t j = 0; j < len; j++) {
        if (AT(p, k->a + j) != (Py_UCS4)name[j])
            return 0;
    }
    return 1;
}

static inline Py_UCS4
peek(const P *p)
{
    return p->i < p->n ? AT(p, p->i) : 0;
}

/* Any value, checked and skipped. */
static int
value(P *p)
{
    Span sp;
    int r, integer;
    long long v;
    switch (peek(p)) {
    case '{':
        for (r = open_obj(p); r == 1; r = more_obj(p)) {
            if (key(p, &sp) != OK || value(p) != OK)
                return BAIL;
        }
        return r;
    case '[':
        for (r = open_arr(p); r == 1; r = more_arr(p)) {
            if (value(p) != OK)
                return BAIL;
        }
        return r;
    case '"':
        return string(p, &sp);
    case 't':
        return literal(p, "true", 4);
    case 'f':
        return literal(p, "false", 5);
    case 'n':
        return literal(p, "null", 4);
    default:
        return number(p, &integer, &v);
    }
}

/* One event's strings to append, in order, and its flag. */
typedef struct {
    Span spans[MAX_SPANS];
    int n;
    int flag;
} Found;

static int
keep(Found *f, const Span *sp)
{
    if (sp->b == sp->a)
        return OK; /* an empty string: nothing to append */
    if (f->n >= MAX_SPANS)
        return BAIL;
    f->spans[f->n++] = *sp;
    return OK;
}

/* A string member given at most once: its span (`*seen` set), or a value of another type
 * (`*seen` set, span left empty). */
static int
string_once(P *p, Span *sp, int *seen)
{
    if (*seen)
        return BAIL; /* given twice: orjson keeps the last, Python decides */
    *seen = 1;
    if (peek(p) == '"')
        return string(p, sp);
    if (peek(p) == '[' || peek(p) == '{')
        return BAIL; /* content as a list of parts, or an object: the general walk */
    return value(p);
}

/* `{}`, `[]` or any value but an object or array with members: what the Python walk reads
 * as empty (`as_dict(x)` falsy, a tool_calls list without calls). Members: Python decides. */
static int
empty_or_scalar(P *p)
{
    Py_UCS4 c = peek(p);
    if (c != '{' && c != '[')
        return value(p);
    p->i++;
    ws(p);
    if (peek(p) != (c == '{' ? '}' : ']'))
        return BAIL;
    p->i++;
    return OK;
}

/* The members of an object (p->i at its brace) handed one by one to `member(p, key, ctx)`. */
typedef int (*Member)(P *p, const Span *k, void *ctx);

static int
object(P *p, Member member, void *ctx)
{
    Span k;
    int r;
    for (r = open_obj(p); r == 1; r = more_obj(p)) {
        if (key(p, &k) != OK || member(p, &k, ctx) != OK)
            return BAIL;
    }
    return r == 0 ? OK : BAIL;
}

/* The elements of an array (p->i at its bracket) handed one by one to `element(p, ctx)`. */
typedef int (*Element)(P *p, void *ctx);

static int
array(P *p, Element element, void *ctx)
{
    int r;
    for (r = open_arr(p); r == 1; r = more_arr(p)) {
        if (element(p, ctx) != OK)
            return BAIL;
    }
    return r == 0 ? OK : BAIL;
}

/* A member read only when it is an object (else checked and skipped), at most once. */
static int
object_once(P *p, int *seen, Member member, void *ctx)
{
    if ((*seen)++)
        return BAIL;
    return peek(p) == '{' ? object(p, member, ctx) : value(p);
}

static int
array_once(P *p, int *seen, Element element, void *ctx)
{
    if ((*seen)++)
        return BAIL;
    return peek(p) == '[' ? array(p, element, ctx) : value(p);
}

/* ------------------------------------------------------------------ OpenAI chat */

/* openai_chat._choice_text's keys, in its order; the first two are answer text. */
static const char *const CHAT_TEXT_KEYS[4] = {
    "content", "refusal", "reasoning_content", "reasoning"};

typedef struct {
    Span got[4];
    int seen[4];
} ChatDelta;

static int
chat_delta_member(P *p, const Span *k, void *ctx)
{
    ChatDelta *d = ctx;
    for (int j = 0; j < 4; j++) {
        if (is_key(p, k, CHAT_TEXT_KEYS[j]))
            return string_once(p, &d->got[j], &d->seen[j]);
    }
    if (is_key(p, k, "tool_calls") || is_key(p, k, "function_call"))
        return empty_or_scalar(p); /* a call: the general walk keeps its pieces */
    return value(p);
}

typedef struct {
    Found *f;
    int delta;
} ChatChoice;

static int
chat_choice_member(P *p, const Span *k, void *ctx)
{
    ChatChoice *c = ctx;
    if (is_key(p, k, "delta")) {
        if (c->delta++)
            return BAIL;
        if (peek(p) != '{')
            return value(p); /* not an object: no text */
        ChatDelta d;
        memset(&d, 0, sizeof d);
        if (object(p, chat_delta_member, &d) != OK)
            return BAIL;
        for (int j = 0; j < 4; j++) {
            if (d.got[j].b > d.got[j].a) {
                if (keep(c->f, &d.got[j]) != OK)
                    return BAIL;
                if (j < 2)
                    c->f->flag = 1;
            }
        }
        return OK;
    }
    if (is_key(p, k, "message"))
        return empty_or_scalar(p); /* a whole message: the general walk */
    return value(p);
}

static int
chat_choice(P *p, void *ctx)
{
    if (peek(p) != '{')
        return value(p); /* not an object: holds no text */
    ChatChoice c = {ctx, 0};
    return object(p, chat_choice_member, &c);
}

typedef struct {
    Found *f;
    int seen; /* the one member read has been seen */
} Top;

static int
chat_member(P *p, const Span *k, void *ctx)
{
    Top *t = ctx;
    if (is_key(p, k, "choices"))
        return array_once(p, &t->seen, chat_choice, t->f);
    return value(p);
}

/* ------------------------------------------------------------------ Gemini */

typedef struct {
    Span text;
    int seen_text, seen_thought, seen_call, thought;
} GeminiPart;

static int
gemini_part_member(P *p, const Span *k, void *ctx)
{
    GeminiPart *g = ctx;
    if (is_key(p, k, "text"))
        return string_once(p, &g->text, &g->seen_text);
    if (is_key(p, k, "thought")) {
        if (g->seen_thought++)
            return BAIL;
        if (peek(p) == 't') {
            g->thought = 1;
            return literal(p, "true", 4);
        }
        return value(p);
    }
    if (is_key(p, k, "functionCall")) {
        if (g->seen_call++)
            return BAIL;
        return empty_or_scalar(p); /* a call: counted by the general walk */
    }
    return value(p);
}

static int
gemini_part(P *p, void *ctx)
{
    Found *f = ctx;
    if (peek(p) != '{')
        return value(p);
    GeminiPart g;
    memset(&g, 0, sizeof g);
    if (object(p, gemini_part_member, &g) != OK)
        return BAIL;
    if (g.thought) {
        f->flag = 1; /* a thought: its text is not counted */
        return OK;
    }
    return keep(f, &g.text);
}

static int
gemini_content_member(P *p, const Span *k, void *ctx)
{
    Top *t = ctx;
    if (is_key(p, k, "parts"))
        return array_once(p, &t->seen, gemini_part, t->f);
    return value(p);
}

static int
gemini_candidate_member(P *p, const Span *k, void *ctx)
{
    Top *t = ctx;
    if (is_key(p, k, "content")) {
        Top inner = {t->f, 0};
        return object_once(p, &t->seen, gemini_content_member, &inner);
    }
    return value(p);
}

static int
gemini_candidate(P *p, void *ctx)
{
    Top t = {ctx, 0};
    return peek(p) == '{' ? object(p, gemini_candidate_member, &t) : value(p);
}

static int
gemini_member(P *p, const Span *k, void *ctx)
{
    Top *t = ctx;
    if (is_key(p, k, "candidates"))
        return array_once(p, &t->seen, gemini_candidate, t->f);
    return value(p);
}

/* ------------------------------------------------------------------ Anthropic */

/* What one content_block_start / content_block_delta says. */
typedef struct {
    Found *f;
    int seen_index, seen_inner;
    int index_kind; /* 0: None, 1: an int, 2: a string */
    long long index;
    Span index_str;
    /* content_block_start's block */
    Span type, name;
    int seen_type, seen_name, name_null;
    /* the block's or delta's strings: text, thinking, partial_json */
    Span got[3];
    int seen[3];
    int seen_input;
} Anth;

static const char *const ANTH_TEXT_KEYS[3] = {"text", "thinking", "partial_json"};

static int
anth_inner_member(P *p, const Span *k, void *ctx)
{
    Anth *a = ctx;
    for (int j = 0; j < 3; j++) {
        if (is_key(p, k, ANTH_TEXT_KEYS[j]))
            return string_once(p, &a->got[j], &a->seen[j]);
    }
    if (is_key(p, k, "input")) {
        if (a->seen_input++)
            return BAIL;
        return empty_or_scalar(p); /* a tool's input object: dumped by the general walk */
    }
    if (is_key(p, k, "type")) {
        if (a->seen_type++)
            return BAIL;
        if (peek(p) != '"')
            return BAIL; /* str(type) of another value: the general walk */
        return string(p, &a->type);
    }
    if (is_key(p, k, "name")) {
        if (a->seen_name++)
            return BAIL;
        if (peek(p) == 'n') {
            a->name_null = 1;
            return literal(p, "null", 4);
        }
        if (peek(p) != '"')
            return BAIL; /* a name of another type: kept as it is by the general walk */
        return string(p, &a->name);
    }
    return value(p);
}

static int
anth_member(P *p, const Span *k, void *ctx, const char *inner)
{
    Anth *a = ctx;
    if (is_key(p, k, "index")) {
        if (a->seen_index++)
            return BAIL;
        Py_UCS4 c = peek(p);
        if (c == '"') {
            a->index_kind = 2;
            return string(p, &a->index_str);
        }
        if (c == '-' || (c >= '0' && c <= '9')) {
            int integer;
            if (number(p, &integer, &a->index) != OK)
                return BAIL;
            a->index_kind = integer ? 1 : 0; /* a float index is no index */
            return OK;
        }
        return value(p); /* any other type: no index */
    }
    if (is_key(p, k, inner)) {
        if (object_once(p, &a->seen_inner, anth_inner_member, a) != OK)
            return BAIL;
        for (int j = 0; j < 3; j++) { /* _block_text's order */
            if (keep(a->f, &a->got[j]) != OK)
                return BAIL;
        }
        return OK;
    }
    return value(p);
}

static int
anth_delta_member(P *p, const Span *k, void *ctx)
{
    return anth_member(p, k, ctx, "delta");
}

static int
anth_start_member(P *p, const Span *k, void *ctx)
{
    return anth_member(p, k, ctx, "content_block");
}

/* ------------------------------------------------------------------ strings */

/* Where found strings are read from: a payload's characters. */
typedef struct {
    const void *d;
    int kind;
} Src;

/* The str a string span decodes to. */
static PyObject *
make_str(const Src *src, const Span *sp)
{
    Py_ssize_t len = sp->b - sp->a;
    const char *start = (const char *)src->d + sp->a * src->kind;
    if (!sp->esc)
        return PyUnicode_FromKindAndData(src->kind, start, len);
    Py_UCS4 small[128] = {0};
    Py_UCS4 *buf = len <= 128 ? small : PyMem_Malloc((size_t)len * sizeof(Py_UCS4));
    if (buf == NULL)
        return PyErr_NoMemory();
    P p = {start, src->kind, len, 0, 0};
    Py_ssize_t o = 0; /* an escape is never shorter than what it stands for */
    while (p.i < len) {
        Py_UCS4 c = AT(&p, p.i);
        if (c != '\\') {
            buf[o++] = c;
            p.i++;
            continue;
        }
        Py_UCS4 e = AT(&p, p.i + 1);
        p.i += 2;
        switch (e) {
        case 'b':
            buf[o++] = '\b';
            break;
        case 'f':
            buf[o++] = '\f';
            break;
        case 'n':
            buf[o++] = '\n';
            break;
        case 'r':
            buf[o++] = '\r';
            break;
        case 't':
            buf[o++] = '\t';
            break;
        case 'u': {
            unsigned v = 0, w = 0;
            hex4(&p, p.i, &v); /* checked by string() */
            p.i += 4;
            if (v >= 0xD800 && v <= 0xDBFF) {
                hex4(&p, p.i + 2, &w);
                p.i += 6;
                v = 0x10000 + ((v - 0xD800) << 10) + (w - 0xDC00);
            }
            buf[o++] = v;
            break;
        }
        default: /* '"', '\\', '/' */
            buf[o++] = e;
        }
    }
    PyObject *r = PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, buf, o);
    if (buf != small)
        PyMem_Free(buf);
    return r;
}

/* Append the found strings to `out`. */
static int
append_found(PyObject *out, const Src *src, const Found *f)
{
    for (int j = 0; j < f->n; j++) {
        PyObject *piece = make_str(src, &f->spans[j]);
        if (piece == NULL)
            return -1;
        int r = PyList_Append(out, piece);
        Py_DECREF(piece);
        if (r < 0)
            return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ the blocks */

typedef struct {
    PyObject *text;
    P all; /* the whole text */
    PyObject *slow;
} Text;

/* The first newline at or after `from` (n: none). */
static Py_ssize_t
find_nl(const P *t, Py_ssize_t from)
{
    Py_ssize_t n = t->n;
    if (t->kind == PyUnicode_1BYTE_KIND) {
        const char *d = t->d;
        const char *nl = from < n ? memchr(d + from, '\n', (size_t)(n - from)) : NULL;
        return nl != NULL ? nl - d : n;
    }
    while (from < n && AT(t, from) != '\n')
        from++;
    return from;
}

/* The next block as `Chunks._blocks` gives it (the pieces of `text.split("\n\n")`, empty ones
 * skipped, leading newlines stripped, the offset moved past them): from the first character
 * after `*pos` that is not a newline (a run of newlines holds only empty pieces) to the next
 * "\n\n" or the end. `*nl` says whether a newline is left inside it. 0 when there is none. */
static int
next_block(const P *t, Py_ssize_t *pos, Py_ssize_t *bs, Py_ssize_t *be, int *nl)
{
    Py_ssize_t n = t->n, start = *pos;
    while (start < n && AT(t, start) == '\n')
        start++;
    if (start >= n)
        return 0;
    Py_ssize_t end = n, first = n, from = start;
    while (from < n) {
        Py_ssize_t at = find_nl(t, from);
        if (at >= n)
            break;
        if (first == n)
            first = at;
        if (at + 1 < n && AT(t, at + 1) == '\n') {
            end = at;
            break;
        }
        from = at + 1;
    }
    *pos = end < n ? end + 2 : n;
    *bs = start;
    *be = end;
    *nl = first < end;
    return 1;
}

/* slow(at, block): the Python walk of one block; its result's truth, or -1 (raised). */
static int
call_slow(Text *t, Py_ssize_t bs, Py_ssize_t be)
{
    PyObject *block = PyUnicode_Substring(t->text, bs, be);
    if (block == NULL)
        return -1;
    PyObject *r = PyObject_CallFunction(t->slow, "nO", bs, block);
    Py_DECREF(block);
    if (r == NULL)
        return -1;
    int truth = PyObject_IsTrue(r);
    Py_DECREF(r);
    return truth;
}

/* Whether text[a:b] starts with the ASCII `prefix`. */
static inline int
starts(const P *t, Py_ssize_t a, Py_ssize_t b, const char *prefix, Py_ssize_t len)
{
    if (b - a < len)
        return 0;
    for (Py_ssize_t j = 0; j < len; j++) {
        if (AT(t, a + j) != (Py_UCS4)prefix[j])
            return 0;
    }
    return 1;
}

/* The event whose payload starts at text[a] (its `{`), read by `member` to its end, when the
 * block ends right after it (a blank line, or the end of the text): the offset where the next
 * block's search starts; -1: not read here (the block is then framed and handed to Python, or
 * skipped, as any other). This reads an event without searching for its end first. */
static Py_ssize_t
read_event(const Text *t, Py_ssize_t a, Member member, void *ctx, Src *src)
{
    const P *all = &t->all;
    src->kind = all->kind;
    src->d = (const char *)all->d + a * all->kind;
    P p = {src->d, all->kind, all->n - a, 0, 0};
    if (object(&p, member, ctx) != OK)
        return -1;
    ws(&p);
    if (p.i == p.n)
        return all->n;
    if (p.i + 1 < p.n && AT(&p, p.i) == '\n' && AT(&p, p.i + 1) == '\n')
        return a + p.i + 2;
    return -1; /* a newline then more of the block (several lines), or a lone last newline */
}

/* The offset of the first character from `pos` that is not a newline. */
static inline Py_ssize_t
skip_newlines(const P *t, Py_ssize_t pos)
{
    while (pos < t->n && AT(t, pos) == '\n')
        pos++;
    return pos;
}

/* Text from the arguments (text, target, slow); -1: raised. */
static int
text_of(PyObject *args, Text *t, PyObject **target, PyTypeObject *type)
{
    if (!PyArg_ParseTuple(args, "UO!O:scan", &t->text, type, target, &t->slow))
        return -1;
    if (PyUnicode_READY(t->text) < 0)
        return -1;
    P all = {PyUnicode_DATA(t->text), PyUnicode_KIND(t->text), PyUnicode_GET_LENGTH(t->text),
             0, 0};
    t->all = all;
    return 0;
}

/* chat and gemini: `data: ` blocks, strings appended to `out`, the flags' or returned. */
static PyObject *
scan_data_events(PyObject *args, Member member)
{
    Text t;
    PyObject *out;
    if (text_of(args, &t, &out, &PyList_Type) < 0)
        return NULL;
    const P *all = &t.all;
    Py_ssize_t pos = 0, bs, be;
    int flag = 0, nl;
    Found f;
    Src src;
    for (;;) {
        Py_ssize_t at = skip_newlines(all, pos);
        if (starts(all, at, all->n, "data: {", 7)) { /* the usual event, read to its end */
            f.n = 0;
            f.flag = 0;
            Top top = {&f, 0};
            Py_ssize_t next = read_event(&t, at + 6, member, &top, &src);
            if (next >= 0) {
                if (append_found(out, &src, &f) < 0)
                    return NULL;
                flag |= f.flag;
                pos = next;
                continue;
            }
        }
        if (!next_block(all, &pos, &bs, &be, &nl))
            break;
        if (!nl && starts(all, bs, be, "data: ", 6) &&
            (bs + 6 == be || starts(all, bs + 6, be, "[DONE]", 6)))
            continue; /* no object: nothing to read, nothing to count */
        int got = call_slow(&t, bs, be);
        if (got < 0)
            return NULL;
        flag |= got;
    }
    return PyBool_FromLong(flag);
}

static PyObject *
chat(PyObject *self, PyObject *args)
{
    return scan_data_events(args, chat_member);
}

static PyObject *
gemini(PyObject *self, PyObject *args)
{
    return scan_data_events(args, gemini_member);
}

/* ------------------------------------------------------------------ Anthropic's blocks */

static PyObject *TEXT;     /* "text", the type of a block a delta starts */
static PyObject *NONE_STR; /* "None": str(None), the type of a block without one */

static PyObject *
index_of(const Src *src, const Anth *a)
{
    if (a->index_kind == 1)
        return PyLong_FromLongLong(a->index);
    if (a->index_kind == 2)
        return make_str(src, &a->index_str);
    return Py_NewRef(Py_None);
}

/* The found strings as a new list. */
static PyObject *
found_list(const Src *src, const Found *f)
{
    PyObject *list = PyList_New(0);
    if (list != NULL && append_found(list, src, f) < 0)
        Py_CLEAR(list);
    return list;
}

/* anthropic._block_event for one event read here: `blocks` updated. */
static int
anth_apply(PyObject *blocks, const Src *src, const Anth *a, int start)
{
    PyObject *index = index_of(src, a);
    if (index == NULL)
        return -1;
    int ret = -1;
    if (start) {
        PyObject *type = a->seen_type ? make_str(src, &a->type) : Py_NewRef(NONE_STR);
        PyObject *name = (a->seen_name && !a->name_null) ? make_str(src, &a->name)
                                                          : Py_NewRef(Py_None);
        PyObject *list = found_list(src, a->f);
        PyObject *entry = (type && name && list) ? PyTuple_Pack(3, type, name, list) : NULL;
        Py_XDECREF(type);
        Py_XDECREF(name);
        Py_XDECREF(list);
        if (entry != NULL) {
            ret = PyDict_SetItem(blocks, index, entry);
            Py_DECREF(entry);
        }
    }
    else {
        /* A strong reference: append_found allocates, and a collection it starts could run
           code that drops the dict's entry. */
        PyObject *entry = Py_XNewRef(PyDict_GetItemWithError(blocks, index));
        if (entry == NULL && !PyErr_Occurred()) {
            PyObject *list = PyList_New(0);
            entry = list ? PyTuple_Pack(3, TEXT, Py_None, list) : NULL;
            Py_XDECREF(list);
            if (entry != NULL && PyDict_SetItem(blocks, index, entry) < 0)
                Py_CLEAR(entry);
        }
        if (entry != NULL) {
            if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 3 ||
                !PyList_Check(PyTuple_GET_ITEM(entry, 2)))
                PyErr_SetString(PyExc_TypeError, "blocks: (type, name, list) expected");
            else
                ret = append_found(PyTuple_GET_ITEM(entry, 2), src, a->f);
            Py_DECREF(entry);
        }
    }
    Py_DECREF(index);
    return ret;
}

static PyObject *
anthropic(PyObject *self, PyObject *args)
{
    Text t;
    PyObject *blocks;
    if (text_of(args, &t, &blocks, &PyDict_Type) < 0)
        return NULL;
    const P *all = &t.all;
    Py_ssize_t pos = 0, bs, be;
    int nl;
    Found f;
    Src src;
    for (;;) {
        Py_ssize_t at = skip_newlines(all, pos);
        int start = starts(all, at, all->n, "event: content_block_start\ndata: {", 34);
        if (start || starts(all, at, all->n, "event: content_block_delta\ndata: {", 34)) {
            Anth a; /* the usual event, read to its end */
            memset(&a, 0, sizeof a);
            f.n = 0;
            f.flag = 0;
            a.f = &f;
            Member m = start ? anth_start_member : anth_delta_member;
            Py_ssize_t next = read_event(&t, at + 33, m, &a, &src);
            if (next >= 0) {
                if (anth_apply(blocks, &src, &a, start) < 0)
                    return NULL;
                pos = next;
                continue;
            }
        }
        if (!next_block(all, &pos, &bs, &be, &nl))
            break;
        /* parse_block's fast path, `event:NAME` then one `data:` line, of another event */
        Py_ssize_t name_b = nl ? find_nl(all, bs) : be;
        if (starts(all, bs, be, "event:", 6) && name_b < be && starts(all, name_b + 1, be, "data:", 5) &&
            find_nl(all, name_b + 1) >= be) {
            Py_ssize_t name_a = bs + 6;
            if (name_a < name_b && AT(all, name_a) == ' ')
                name_a++;
            Py_ssize_t len = name_b - name_a;
            if (len > 0 && !(len == 19 && (starts(all, name_a, name_b, "content_block_start", 19) ||
                                           starts(all, name_a, name_b, "content_block_delta", 19))))
                continue; /* an event the text walk skips: neither decoded nor counted */
        }
        if (call_slow(&t, bs, be) < 0)
            return NULL;
    }
    return Py_NewRef(Py_True);
}

static PyMethodDef methods[] = {
    {"chat", chat, METH_VARARGS,
     "chat(text, out, slow) -> bool: openai_chat's text walk (see the module doc)."},
    {"gemini", gemini, METH_VARARGS,
     "gemini(text, out, slow) -> bool: gemini's text walk (see the module doc)."},
    {"anthropic", anthropic, METH_VARARGS,
     "anthropic(text, blocks, slow) -> True: anthropic's text walk (see the module doc)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "_textscan",
    .m_doc = "The text mode's walk over a stream's events in C (see sidecar/parse/textscan.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__textscan(void)
{
    for (int c = 0; c < 256; c++)
        SPECIAL[c] = c < 0x20 || c == '"' || c == '\\';
    if (TEXT == NULL && (TEXT = PyUnicode_InternFromString("text")) == NULL)
        return NULL;
    if (NONE_STR == NULL && (NONE_STR = PyUnicode_InternFromString("None")) == NULL)
        return NULL;
    return PyModule_Create(&module);
}
