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
 * The shapes read are tables (`Shape`: the members of an object it reads, and how), one walker
 * (`read_object`) reads them all; one driver (`scan`) frames the blocks of all three.
 *
 * It reads only the events it can prove it reads as Python would: one `data: ` line (or, for
 * Anthropic, `event: NAME` then one `data: ` line) whose payload is a JSON object in a subset of
 * JSON that orjson surely accepts (no exponent, at most 18 digits per number, no control
 * character or surrogate in a string, \u escapes that make whole characters, keys without
 * escapes, at most MAX_DEPTH levels), with none of the rarer shapes (a key it reads given
 * twice, a tool call, a `message`, content given as a list, a non-empty tool `input`, ...).
 * Any other block is handed to `slow(at, block)`, `at` being the block's offset in `text` as
 * `Chunks._blocks` gives it: the Python walk for that one event (it decodes it, counts it if it
 * is malformed, and returns the event's flag), so the order of the pieces and every count stay
 * Python's. A payload that `[DONE]` starts or that is empty is skipped, as `forward_kinds` skips
 * it.
 *
 * The text is read in its own representation (1, 2 or 4 bytes a character, no copy); a string
 * holding a surrogate (bad bytes decoded with surrogateescape), which orjson refuses, goes to
 * `slow`. Errors (memory, or one `slow` raised) return NULL with the exception set.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <string.h>

#define MAX_DEPTH 64  /* deeper payloads go to `slow` (orjson allows 1024) */
#define MAX_DIGITS 18 /* a longer number goes to `slow` (orjson reads any, or refuses) */
#define MAX_SPANS 64  /* strings kept from one event before it is handed to `slow` */
#define MAX_SLOTS 4   /* strings one object of a shape read here holds (Shape.keep) */

/* An ASCII string literal and its length, as the comparisons below take them. */
#define S(s) s, (Py_ssize_t)(sizeof(s) - 1)

/* ------------------------------------------------------------------ the JSON subset */

typedef struct {
    Py_ssize_t a, b; /* the string's contents, between its quotes (offsets in the text) */
    int esc;         /* holds a backslash */
} Span;

/* The text: characters of the str's own kind (1, 2 or 4 bytes each), read with AT. */
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

/* Whether the characters from `at` (before `end`) start with the ASCII `s`. */
static inline int
ascii_at(const P *p, Py_ssize_t at, Py_ssize_t end, const char *s, Py_ssize_t len)
{
    if (end - at < len)
        return 0;
    if (p->kind == PyUnicode_1BYTE_KIND)
        return memcmp((const char *)p->d + at, s, (size_t)len) == 0;
    for (Py_ssize_t j = 0; j < len; j++) {
        if (AT(p, at + j) != (Py_UCS4)s[j])
            return 0;
    }
    return 1;
}

/* Whether the characters [a, b) are the ASCII `s`. */
static inline int
ascii_is(const P *p, Py_ssize_t a, Py_ssize_t b, const char *s, Py_ssize_t len)
{
    return b - a == len && ascii_at(p, a, b, s, len);
}

static inline Py_UCS4
peek(const P *p)
{
    return p->i < p->n ? AT(p, p->i) : 0;
}

/* Whitespace but newlines: a payload read here is one line (a newline ends the block's data
 * line, or makes it a block of several lines, which `parse_block` reads: Python's part). */
static inline void
ws(P *p)
{
    while (p->i < p->n) {
        Py_UCS4 c = AT(p, p->i);
        if (c > ' ' || (c != ' ' && c != '\t' && c != '\r'))
            return;
        p->i++;
    }
}

static int
literal(P *p, const char *word, Py_ssize_t len)
{
    if (!ascii_at(p, p->i, p->n, word, len))
        return BAIL;
    p->i += len;
    return OK;
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

/* The \u escape at `i` (its backslash, before p->n): its length (6, or 12 for a surrogate
 * pair) and the character it makes (`*ch`), or 0: bad hex digits, a low surrogate alone, a
 * high one without its low one. escaped() checks with it, make_str() decodes with it. */
static Py_ssize_t
u_escape(const P *p, Py_ssize_t i, Py_UCS4 *ch)
{
    unsigned v, w;
    if (i + 6 > p->n || !hex4(p, i + 2, &v) || (v >= 0xDC00 && v <= 0xDFFF))
        return 0;
    if (v < 0xD800 || v > 0xDBFF) {
        *ch = v;
        return 6;
    }
    if (i + 12 > p->n || AT(p, i + 6) != '\\' || AT(p, i + 7) != 'u' || !hex4(p, i + 8, &w) ||
        w < 0xDC00 || w > 0xDFFF)
        return 0;
    *ch = 0x10000 + ((v - 0xD800) << 10) + (w - 0xDC00);
    return 12;
}

/* UNESCAPED[c]: what the escape `\c` stands for (0: not one of JSON's, or \u). */
static const unsigned char UNESCAPED[128] = {
    ['"'] = '"',  ['\\'] = '\\', ['/'] = '/',  ['b'] = '\b',
    ['f'] = '\f', ['n'] = '\n',  ['r'] = '\r', ['t'] = '\t',
};

/* SPECIAL[c]: a character that ends a run of plain string characters below 256 (a quote, a
 * backslash, a control character). Above 255 only a surrogate does: orjson refuses a str
 * holding one. */
static unsigned char SPECIAL[256];

#define NARROW_SPECIAL(c) SPECIAL[c]
#define WIDE_SPECIAL(c) ((c) < 256 ? SPECIAL[c] : ((c) - 0xD800u) < 0x800u)

/* One loop per kind, four characters at a time. */
#define PLAIN_RUN(T, IS_SPECIAL)                                                                  \
    do {                                                                                          \
        const T *d_ = (const T *)p->d;                                                            \
        while (i + 4 <= n && !(IS_SPECIAL(d_[i]) | IS_SPECIAL(d_[i + 1]) |                        \
                               IS_SPECIAL(d_[i + 2]) | IS_SPECIAL(d_[i + 3])))                    \
            i += 4;                                                                               \
        while (i < n && !IS_SPECIAL(d_[i]))                                                       \
            i++;                                                                                  \
    } while (0)

/* The end of the run of plain characters from `i`. */
static inline Py_ssize_t
plain_end(const P *p, Py_ssize_t i)
{
    Py_ssize_t n = p->n;
    if (p->kind == PyUnicode_1BYTE_KIND)
        PLAIN_RUN(Py_UCS1, NARROW_SPECIAL);
    else if (p->kind == PyUnicode_2BYTE_KIND)
        PLAIN_RUN(Py_UCS2, WIDE_SPECIAL);
    else
        PLAIN_RUN(Py_UCS4, WIDE_SPECIAL);
    return i;
}

/* The rest of a string whose plain run ended at `i` on something else than its closing quote:
 * escapes (JSON's, \u escapes that make whole characters) between plain runs. Out of line:
 * string() then makes no call, and the usual string holds no escape. */
static Py_NO_INLINE int
escaped(P *p, Span *sp, Py_ssize_t i)
{
    Py_ssize_t len;
    Py_UCS4 e, ch;
    for (;;) {
        if (i >= p->n)
            return BAIL;
        if (AT(p, i) == '"')
            break;
        if (AT(p, i) != '\\' || i + 1 >= p->n)
            return BAIL; /* a control character or a surrogate: orjson refuses them */
        e = AT(p, i + 1);
        if (e < 128 && UNESCAPED[e])
            len = 2;
        else if (e != 'u' || (len = u_escape(p, i, &ch)) == 0)
            return BAIL;
        sp->esc = 1;
        i = plain_end(p, i + len);
    }
    sp->b = i;
    p->i = i + 1;
    return OK;
}

/* A string at p->i (its opening quote); its contents' span. */
static int
string(P *p, Span *sp)
{
    Py_ssize_t i = plain_end(p, p->i + 1);
    sp->a = p->i + 1;
    sp->esc = 0;
    if (i >= p->n || AT(p, i) != '"')
        return escaped(p, sp, i);
    sp->b = i;
    p->i = i + 1;
    return OK;
}

/* The end of the run of digits from `i` (their value added to `*v`), or -1: more than
 * MAX_DIGITS of them counted in `*count`. */
static Py_ssize_t
digits(const P *p, Py_ssize_t i, int *count, long long *v)
{
    for (; i < p->n; i++) {
        Py_UCS4 c = AT(p, i);
        if (c < '0' || c > '9')
            break;
        if (++*count > MAX_DIGITS)
            return -1;
        *v = *v * 10 + (c - '0');
    }
    return i;
}

/* A number at p->i: -?(0|[1-9][0-9]*)(\.[0-9]+)?, at most MAX_DIGITS digits, no exponent.
 * `*integer` says whether it had no fraction, `*value` its value then. */
static int
number(P *p, int *integer, long long *value)
{
    int neg = peek(p) == '-', count = 0;
    long long v = 0;
    Py_ssize_t at = p->i + neg, i = digits(p, at, &count, &v);
    if (i <= at || (i - at > 1 && AT(p, at) == '0'))
        return BAIL; /* no digit, too many, or a leading zero */
    *integer = !(i < p->n && AT(p, i) == '.');
    if (!*integer) {
        at = i + 1;
        if ((i = digits(p, at, &count, &v)) <= at)
            return BAIL;
    }
    if (i < p->n && (AT(p, i) == 'e' || AT(p, i) == 'E'))
        return BAIL; /* 1e999 is refused, 1e5 is not: Python decides */
    *value = neg ? -v : v;
    p->i = i;
    return OK;
}

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
    if (peek(p) == close) {
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
    Py_UCS4 c = peek(p);
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

/* A member's key at p->i (open_ and more_ skip the whitespace before it), then its colon; the
 * value's first character is at p->i (or the end: every reader of a value refuses it). A key
 * with an escape could spell a name this walk reads: not in the subset. */
static int
key(P *p, Span *k)
{
    if (peek(p) != '"' || string(p, k) != OK || k->esc)
        return BAIL;
    ws(p);
    if (peek(p) != ':')
        return BAIL;
    p->i++;
    ws(p);
    return OK;
}

static int value(P *p);

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

/* ------------------------------------------------------------------ the shapes read */

/* What one event says: the strings to append, in order, its flag, and Anthropic's fields. */
typedef struct {
    int flag;
    int index_kind; /* 0: None, 1: an int, 2: a string */
    long long index;
    Span index_str;
    Span type, name; /* content_block_start's block */
    int has_type, has_name;
    int n;
    Span spans[MAX_SPANS];
} Event;

/* How the value of a member a shape names is read (any other member is checked and skipped). */
enum {
    ARRAY,   /* an array: its objects read as `sub`, its other elements skipped; else skipped */
    OBJECT,  /* an object read as `sub`; another value skipped (it holds no text) */
    TEXT,    /* a string kept in the object's slot `slot`; a list or object: BAIL (the general
                walk reads content lists), another value: no text */
    EMPTY,   /* what the Python walk reads as empty (empty_or_scalar): a call, a message, a
                tool's input, counted or kept by the general walk */
    THOUGHT, /* `true`: the object is a thought (its text is not kept, the event's flag set) */
    TYPE,    /* the block's type: a string (str(type) of another value: BAIL) */
    NAME,    /* the block's name: a string or null (a name of another type: BAIL) */
    INDEX,   /* the event's index: an int or a string; a float or anything else is no index */
};

typedef struct Shape Shape;

typedef struct {
    const char *name;
    Py_ssize_t len;
    int how, slot;
    const Shape *sub;
} Field;

/* An object the walk reads: its members read as `fields` say (each at most once: given twice,
 * orjson keeps the last, Python decides); when it closes its slots [0, keep) are kept in order,
 * a non-empty one below `answer` setting the event's flag (answer text). */
struct Shape {
    const Field *fields;
    int n, keep, answer;
};

#define FIELDS(a) a, (int)(sizeof(a) / sizeof(a[0]))

/* Any object: every member checked and skipped. */
static const Shape ANY = {NULL, 0};

/* openai_chat._choice_text's keys, in its order; the first two are answer text. */
static const Field CHAT_DELTA_F[] = {
    {S("content"), TEXT, .slot = 0},
    {S("refusal"), TEXT, .slot = 1},
    {S("reasoning_content"), TEXT, .slot = 2},
    {S("reasoning"), TEXT, .slot = 3},
    {S("tool_calls"), EMPTY},
    {S("function_call"), EMPTY},
};
static const Shape CHAT_DELTA = {FIELDS(CHAT_DELTA_F), .keep = 4, .answer = 2};
static const Field CHAT_CHOICE_F[] = {
    {S("delta"), OBJECT, .sub = &CHAT_DELTA},
    {S("message"), EMPTY}, /* a whole message: the general walk */
};
static const Shape CHAT_CHOICE = {FIELDS(CHAT_CHOICE_F)};
static const Field CHAT_F[] = {{S("choices"), ARRAY, .sub = &CHAT_CHOICE}};
static const Shape CHAT = {FIELDS(CHAT_F)};

/* gemini._texts: candidates[].content.parts[]: a part's text unless it is a thought. */
static const Field GEMINI_PART_F[] = {
    {S("text"), TEXT, .slot = 0},
    {S("thought"), THOUGHT},
    {S("functionCall"), EMPTY},
};
static const Shape GEMINI_PART = {FIELDS(GEMINI_PART_F), .keep = 1};
static const Field GEMINI_CONTENT_F[] = {{S("parts"), ARRAY, .sub = &GEMINI_PART}};
static const Shape GEMINI_CONTENT = {FIELDS(GEMINI_CONTENT_F)};
static const Field GEMINI_CANDIDATE_F[] = {{S("content"), OBJECT, .sub = &GEMINI_CONTENT}};
static const Shape GEMINI_CANDIDATE = {FIELDS(GEMINI_CANDIDATE_F)};
static const Field GEMINI_F[] = {{S("candidates"), ARRAY, .sub = &GEMINI_CANDIDATE}};
static const Shape GEMINI = {FIELDS(GEMINI_F)};

/* anthropic._stream_blocks: a start's content_block or a delta's delta, its strings in
 * _block_text's order. */
static const Field ANTH_BLOCK_F[] = {
    {S("text"), TEXT, .slot = 0},
    {S("thinking"), TEXT, .slot = 1},
    {S("partial_json"), TEXT, .slot = 2},
    {S("input"), EMPTY}, /* a tool's input object: dumped by the general walk */
    {S("type"), TYPE},
    {S("name"), NAME},
};
static const Shape ANTH_BLOCK = {FIELDS(ANTH_BLOCK_F), .keep = 3};
static const Field ANTH_START_F[] = {
    {S("index"), INDEX},
    {S("content_block"), OBJECT, .sub = &ANTH_BLOCK},
};
static const Shape ANTH_START = {FIELDS(ANTH_START_F)};
static const Field ANTH_DELTA_F[] = {
    {S("index"), INDEX},
    {S("delta"), OBJECT, .sub = &ANTH_BLOCK},
};
static const Shape ANTH_DELTA = {FIELDS(ANTH_DELTA_F)};

static int read_object(P *p, const Shape *s, Event *e);

/* An array (p->i at its bracket): its objects read as `s`, its other elements skipped. */
static int
read_array(P *p, const Shape *s, Event *e)
{
    int r;
    for (r = open_(p, ']'); r == 1; r = more_(p, ']')) {
        if ((peek(p) == '{' ? read_object(p, s, e) : value(p)) != OK)
            return BAIL;
    }
    return r;
}

/* Any value, checked and skipped. */
static int
value(P *p)
{
    Span sp;
    int integer;
    long long v;
    switch (peek(p)) {
    case '{':
        return read_object(p, &ANY, NULL);
    case '[':
        return read_array(p, &ANY, NULL);
    case '"':
        return string(p, &sp);
    case 't':
        return literal(p, S("true"));
    case 'f':
        return literal(p, S("false"));
    case 'n':
        return literal(p, S("null"));
    default:
        return number(p, &integer, &v);
    }
}

/* The value of member `f` of an object whose slots are `slots`. */
static int
read_field(P *p, const Field *f, Span *slots, int *thought, Event *e)
{
    Py_UCS4 c = peek(p);
    int integer;
    switch (f->how) {
    case ARRAY:
        return c == '[' ? read_array(p, f->sub, e) : value(p);
    case OBJECT:
        return c == '{' ? read_object(p, f->sub, e) : value(p);
    case TEXT:
        if (c == '"')
            return string(p, &slots[f->slot]);
        return c == '[' || c == '{' ? BAIL : value(p);
    case EMPTY:
        return empty_or_scalar(p);
    case THOUGHT:
        *thought = c == 't';
        return value(p);
    case TYPE:
        e->has_type = 1;
        return c == '"' ? string(p, &e->type) : BAIL;
    case NAME:
        if (c != '"')
            return c == 'n' ? literal(p, S("null")) : BAIL;
        e->has_name = 1;
        return string(p, &e->name);
    default: /* INDEX */
        if (c == '"') {
            e->index_kind = 2;
            return string(p, &e->index_str);
        }
        if (c != '-' && (c < '0' || c > '9'))
            return value(p);
        if (number(p, &integer, &e->index) != OK)
            return BAIL;
        e->index_kind = integer;
        return OK;
    }
}

/* An object (p->i at its brace) read as `s`. */
static int
read_object(P *p, const Shape *s, Event *e)
{
    Span slots[MAX_SLOTS], k;
    unsigned seen = 0;
    int thought = 0, r;
    for (int j = 0; j < s->keep; j++)
        slots[j].a = slots[j].b = 0;
    for (r = open_(p, '}'); r == 1; r = more_(p, '}')) {
        if (key(p, &k) != OK)
            return BAIL;
        const Field *f = s->fields, *end = f + s->n;
        while (f < end && !ascii_is(p, k.a, k.b, f->name, f->len))
            f++;
        if (f == end) {
            if (value(p) != OK)
                return BAIL;
            continue;
        }
        unsigned bit = 1u << (f - s->fields);
        if ((seen & bit) || read_field(p, f, slots, &thought, e) != OK)
            return BAIL;
        seen |= bit;
    }
    if (r != 0)
        return BAIL;
    if (thought) {
        e->flag = 1; /* a thought: its text is not counted */
        return OK;
    }
    for (int j = 0; j < s->keep; j++) {
        if (slots[j].b > slots[j].a) {
            if (e->n >= MAX_SPANS)
                return BAIL;
            e->spans[e->n++] = slots[j];
            if (j < s->answer)
                e->flag = 1;
        }
    }
    return OK;
}

/* ------------------------------------------------------------------ strings */

/* The str a string span of the text decodes to. */
static PyObject *
make_str(const P *text, const Span *sp)
{
    Py_ssize_t len = sp->b - sp->a;
    if (!sp->esc)
        return PyUnicode_FromKindAndData(text->kind, (const char *)text->d + sp->a * text->kind,
                                         len);
    Py_UCS4 small[128];
    Py_UCS4 *buf = len <= 128 ? small : PyMem_Malloc((size_t)len * sizeof(Py_UCS4));
    if (buf == NULL)
        return PyErr_NoMemory();
    P p = {text->d, text->kind, sp->b, sp->a, 0}; /* checked by string() */
    Py_ssize_t o = 0; /* an escape is never shorter than what it stands for */
    while (p.i < p.n) {
        Py_UCS4 c = AT(&p, p.i);
        if (c != '\\') {
            buf[o++] = c;
            p.i++;
        }
        else if ((c = AT(&p, p.i + 1)) == 'u')
            p.i += u_escape(&p, p.i, &buf[o++]);
        else {
            buf[o++] = UNESCAPED[c];
            p.i += 2;
        }
    }
    PyObject *r = PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, buf, o);
    if (buf != small)
        PyMem_Free(buf);
    return r;
}

/* Append the event's strings to the list `out`. */
static int
append_found(PyObject *out, const P *text, const Event *e)
{
    for (int j = 0; j < e->n; j++) {
        PyObject *piece = make_str(text, &e->spans[j]);
        if (piece == NULL)
            return -1;
        int r = PyList_Append(out, piece);
        Py_DECREF(piece);
        if (r < 0)
            return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ Anthropic's blocks */

static PyObject *TEXT_STR; /* "text", the type of a block a delta starts */
static PyObject *NONE_STR; /* "None": str(None), the type of a block without one */

/* blocks[index] = (type, name, []): that entry (a new reference), or NULL (raised). */
static PyObject *
new_block(PyObject *blocks, PyObject *index, PyObject *type, PyObject *name)
{
    PyObject *list = (type && name) ? PyList_New(0) : NULL;
    PyObject *entry = list ? PyTuple_Pack(3, type, name, list) : NULL;
    Py_XDECREF(list);
    if (entry != NULL && PyDict_SetItem(blocks, index, entry) < 0)
        Py_CLEAR(entry);
    return entry;
}

/* anthropic._block_event for one event read here: `blocks` updated. */
static int
anth_apply(PyObject *blocks, const P *text, const Event *e, int start)
{
    PyObject *index = e->index_kind == 1   ? PyLong_FromLongLong(e->index)
                      : e->index_kind == 2 ? make_str(text, &e->index_str)
                                           : Py_NewRef(Py_None);
    if (index == NULL)
        return -1;
    PyObject *entry;
    if (start) {
        PyObject *type = e->has_type ? make_str(text, &e->type) : Py_NewRef(NONE_STR);
        PyObject *name = e->has_name ? make_str(text, &e->name) : Py_NewRef(Py_None);
        entry = new_block(blocks, index, type, name);
        Py_XDECREF(type);
        Py_XDECREF(name);
    }
    else {
        /* A strong reference: append_found allocates, and a collection it starts could run
           code that drops the dict's entry. */
        entry = Py_XNewRef(PyDict_GetItemWithError(blocks, index));
        if (entry == NULL && !PyErr_Occurred())
            entry = new_block(blocks, index, TEXT_STR, Py_None);
    }
    Py_DECREF(index);
    if (entry == NULL)
        return -1;
    int ret = -1;
    if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 3 ||
        !PyList_Check(PyTuple_GET_ITEM(entry, 2)))
        PyErr_SetString(PyExc_TypeError, "blocks: (type, name, list) expected");
    else
        ret = append_found(PyTuple_GET_ITEM(entry, 2), text, e);
    Py_DECREF(entry);
    return ret;
}

/* ------------------------------------------------------------------ the blocks */

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

/* The offset of the first character from `pos` that is not a newline. */
static inline Py_ssize_t
skip_newlines(const P *t, Py_ssize_t pos)
{
    while (pos < t->n && AT(t, pos) == '\n')
        pos++;
    return pos;
}

/* The next block as `Chunks._blocks` gives it (the pieces of `text.split("\n\n")`, empty ones
 * skipped, leading newlines stripped, the offset moved past them): from the first character
 * after `*pos` that is not a newline (a run of newlines holds only empty pieces) to the next
 * "\n\n" or the end. `*nl` says whether a newline is left inside it. 0 when there is none. */
static int
next_block(const P *t, Py_ssize_t *pos, Py_ssize_t *bs, Py_ssize_t *be, int *nl)
{
    Py_ssize_t n = t->n, start = skip_newlines(t, *pos);
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

/* The event whose payload starts at text[a] (its `{`), read as `s` to its end, when the block
 * ends right after it (a blank line, or the end of the text): the offset where the next
 * block's search starts; -1: not read here (the block is then framed and handed to Python, or
 * skipped, as any other). This reads an event without searching for its end first. */
static Py_ssize_t
read_event(const P *text, Py_ssize_t a, const Shape *s, Event *e)
{
    P p = {text->d, text->kind, text->n, a, 0};
    memset(e, 0, offsetof(Event, spans));
    if (read_object(&p, s, e) != OK)
        return -1;
    ws(&p);
    if (p.i == p.n)
        return p.n;
    if (p.i + 1 < p.n && AT(&p, p.i) == '\n' && AT(&p, p.i + 1) == '\n')
        return p.i + 2;
    return -1; /* a newline then more of the block (several lines), or a lone last newline */
}

/* A block that holds no payload (`data: `, `data: [DONE]...`): nothing to read or count. */
static int
no_payload(const P *t, Py_ssize_t bs, Py_ssize_t be, int nl)
{
    return !nl && ascii_at(t, bs, be, S("data: ")) &&
           (bs + 6 == be || ascii_at(t, bs + 6, be, S("[DONE]")));
}

/* parse_block's fast path, `event:NAME` then one `data:` line, of an event the text walk of
 * Anthropic skips (neither decoded nor counted): a name but content_block_start / delta. */
static int
other_event(const P *t, Py_ssize_t bs, Py_ssize_t be, int nl)
{
    Py_ssize_t name_a = bs + 6, name_b = nl ? find_nl(t, bs) : be;
    if (!ascii_at(t, bs, be, S("event:")) || name_b >= be ||
        !ascii_at(t, name_b + 1, be, S("data:")) || find_nl(t, name_b + 1) < be)
        return 0;
    if (name_a < name_b && AT(t, name_a) == ' ')
        name_a++;
    return name_a < name_b && !ascii_is(t, name_a, name_b, S("content_block_start")) &&
           !ascii_is(t, name_a, name_b, S("content_block_delta"));
}

/* The walk of one provider: the events it reads here (what precedes the payload's `{` in
 * their block, and their payload's shape), and the blocks it skips. */
typedef struct {
    struct {
        const char *head;
        Py_ssize_t len;
        const Shape *shape;
    } usual[2];
    int (*skip)(const P *t, Py_ssize_t bs, Py_ssize_t be, int nl);
    int blocks; /* Anthropic's: the target is the blocks dict */
} Walk;

static const Walk CHAT_WALK = {{{S("data: {"), &CHAT}}, no_payload, 0};
static const Walk GEMINI_WALK = {{{S("data: {"), &GEMINI}}, no_payload, 0};
static const Walk ANTH_WALK = {{{S("event: content_block_start\ndata: {"), &ANTH_START},
                                {S("event: content_block_delta\ndata: {"), &ANTH_DELTA}},
                               other_event,
                               1};

/* slow(at, block): the Python walk of one block; its result's truth, or -1 (raised). */
static int
call_slow(PyObject *text, PyObject *slow, Py_ssize_t bs, Py_ssize_t be)
{
    PyObject *block = PyUnicode_Substring(text, bs, be);
    if (block == NULL)
        return -1;
    PyObject *r = PyObject_CallFunction(slow, "nO", bs, block);
    Py_DECREF(block);
    if (r == NULL)
        return -1;
    int truth = PyObject_IsTrue(r);
    Py_DECREF(r);
    return truth;
}

/* The usual event at `at` read here: 1 (`*pos` moved past it), 0 (not read: its block is
 * then framed as any other), -1 (raised). */
static int
read_usual(const Walk *w, const P *all, Py_ssize_t at, PyObject *target, Py_ssize_t *pos,
           int *flag)
{
    Event e;
    for (int u = 0; u < 2 && w->usual[u].head != NULL; u++) {
        if (!ascii_at(all, at, all->n, w->usual[u].head, w->usual[u].len))
            continue;
        Py_ssize_t next = read_event(all, at + w->usual[u].len - 1, w->usual[u].shape, &e);
        if (next < 0)
            return 0;
        if ((w->blocks ? anth_apply(target, all, &e, u == 0) : append_found(target, all, &e)) < 0)
            return -1;
        *flag |= e.flag;
        *pos = next;
        return 1;
    }
    return 0;
}

/* scan(text, target, slow) of one walk: chat's and gemini's flag, or Anthropic's True. */
static PyObject *
scan(PyObject *args, const Walk *w)
{
    PyObject *text, *target, *slow;
    if (!PyArg_ParseTuple(args, "UO!O:scan", &text, w->blocks ? &PyDict_Type : &PyList_Type,
                          &target, &slow))
        return NULL;
    if (PyUnicode_READY(text) < 0)
        return NULL;
    const P all = {PyUnicode_DATA(text), PyUnicode_KIND(text), PyUnicode_GET_LENGTH(text), 0, 0};
    Py_ssize_t pos = 0, bs, be;
    int flag = 0, nl, got;
    for (;;) {
        if ((got = read_usual(w, &all, skip_newlines(&all, pos), target, &pos, &flag)) != 0) {
            if (got < 0)
                return NULL;
            continue;
        }
        if (!next_block(&all, &pos, &bs, &be, &nl))
            break;
        if (w->skip(&all, bs, be, nl))
            continue;
        if ((got = call_slow(text, slow, bs, be)) < 0)
            return NULL;
        flag |= got;
    }
    return w->blocks ? Py_NewRef(Py_True) : PyBool_FromLong(flag);
}

static PyObject *
chat(PyObject *self, PyObject *args)
{
    return scan(args, &CHAT_WALK);
}

static PyObject *
gemini(PyObject *self, PyObject *args)
{
    return scan(args, &GEMINI_WALK);
}

static PyObject *
anthropic(PyObject *self, PyObject *args)
{
    return scan(args, &ANTH_WALK);
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
    if (TEXT_STR == NULL && (TEXT_STR = PyUnicode_InternFromString("text")) == NULL)
        return NULL;
    if (NONE_STR == NULL && (NONE_STR = PyUnicode_InternFromString("None")) == NULL)
        return NULL;
    return PyModule_Create(&module);
}
