/*
 * sidecar.spool._records: the spool's record headers (sidecar/spool/segment.py).
 *
 * record_headers(first_seq: int, payloads: list) -> list[bytes], equal to segment.py's
 * `_record_headers_pure`: for each payload (bytes or any contiguous buffer), numbered from
 * `first_seq`, its 16-byte header `u32 length | u32 CRC-32 of (seq as u64 + payload) | u64 seq`,
 * little-endian. The CRC is zlib's (polynomial 0xEDB88320), computed 64 bytes at a time with
 * carry-less multiplication (PCLMULQDQ) on x86-64 CPUs that have it: about four times faster
 * than zlib 1.2's on the spool's ~1.7 KiB records, the largest per-record cost of the spool.
 * `CLMUL` says whether this CPU takes that path; segment.py uses this module only then (the
 * byte-at-a-time table below is only for the last 0-15 bytes of a record and its sequence).
 * A sequence past 2**64 - 1 or a payload of 4 GiB or more raises OverflowError.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static uint32_t table[256];

static void
make_table(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        table[i] = c;
    }
}

/* The CRC register (not inverted) over `n` bytes, one at a time. */
static uint32_t
crc_bytes(uint32_t c, const unsigned char *p, size_t n)
{
    while (n--)
        c = table[(c ^ *p++) & 0xff] ^ (c >> 8);
    return c;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_CLMUL_PATH 1
/* Folding with carry-less multiplication (Intel, "Fast CRC Computation for Generic Polynomials
 * Using PCLMULQDQ Instruction", 2009: four 128-bit lanes folded 64 bytes at a time, then into
 * one, then Barrett reduction; the bit-reflected constants for 0xEDB88320). `n` >= 64 and a
 * multiple of 16; `c` and the result are the CRC register (not inverted). Unaligned loads. */
__attribute__((target("pclmul,sse4.1")))
static uint32_t crc_clmul(uint32_t c, const unsigned char *buf, size_t n) {
    const __m128i k1k2 = _mm_set_epi64x(0x01c6e41596LL, 0x0154442bd4LL);
    const __m128i k3k4 = _mm_set_epi64x(0x00ccaa009eLL, 0x01751997d0LL);
    const __m128i k5k0 = _mm_set_epi64x(0, 0x0163cd6124LL);
    const __m128i poly = _mm_set_epi64x(0x01f7011641LL, 0x01db710641LL);
    __m128i x0, x1, x2, x3, x4, x5, x6, x7, x8, y5, y6, y7, y8;
    x1 = _mm_loadu_si128((const __m128i *)(buf + 0x00));
    x2 = _mm_loadu_si128((const __m128i *)(buf + 0x10));
    x3 = _mm_loadu_si128((const __m128i *)(buf + 0x20));
    x4 = _mm_loadu_si128((const __m128i *)(buf + 0x30));
    x1 = _mm_xor_si128(x1, _mm_cvtsi32_si128((int)c));
    x0 = k1k2;
    buf += 64;
    n -= 64;
    while (n >= 64) {
        x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
        x6 = _mm_clmulepi64_si128(x2, x0, 0x00);
        x7 = _mm_clmulepi64_si128(x3, x0, 0x00);
        x8 = _mm_clmulepi64_si128(x4, x0, 0x00);
        x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
        x2 = _mm_clmulepi64_si128(x2, x0, 0x11);
        x3 = _mm_clmulepi64_si128(x3, x0, 0x11);
        x4 = _mm_clmulepi64_si128(x4, x0, 0x11);
        y5 = _mm_loadu_si128((const __m128i *)(buf + 0x00));
        y6 = _mm_loadu_si128((const __m128i *)(buf + 0x10));
        y7 = _mm_loadu_si128((const __m128i *)(buf + 0x20));
        y8 = _mm_loadu_si128((const __m128i *)(buf + 0x30));
        x1 = _mm_xor_si128(_mm_xor_si128(x1, x5), y5);
        x2 = _mm_xor_si128(_mm_xor_si128(x2, x6), y6);
        x3 = _mm_xor_si128(_mm_xor_si128(x3, x7), y7);
        x4 = _mm_xor_si128(_mm_xor_si128(x4, x8), y8);
        buf += 64;
        n -= 64;
    }
    x0 = k3k4;
    x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
    x1 = _mm_xor_si128(_mm_xor_si128(x1, x2), x5);
    x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
    x1 = _mm_xor_si128(_mm_xor_si128(x1, x3), x5);
    x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
    x1 = _mm_xor_si128(_mm_xor_si128(x1, x4), x5);
    while (n >= 16) {
        x2 = _mm_loadu_si128((const __m128i *)buf);
        x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
        x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
        x1 = _mm_xor_si128(_mm_xor_si128(x1, x2), x5);
        buf += 16;
        n -= 16;
    }
    x2 = _mm_clmulepi64_si128(x1, x0, 0x10);
    x3 = _mm_setr_epi32(~0, 0, ~0, 0);
    x1 = _mm_srli_si128(x1, 8);
    x1 = _mm_xor_si128(x1, x2);
    x0 = k5k0;
    x2 = _mm_srli_si128(x1, 4);
    x1 = _mm_and_si128(x1, x3);
    x1 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x1 = _mm_xor_si128(x1, x2);
    x0 = poly;
    x2 = _mm_and_si128(x1, x3);
    x2 = _mm_clmulepi64_si128(x2, x0, 0x10);
    x2 = _mm_and_si128(x2, x3);
    x2 = _mm_clmulepi64_si128(x2, x0, 0x00);
    x1 = _mm_xor_si128(x1, x2);
    return (uint32_t)_mm_extract_epi32(x1, 1);
}
#endif

static int use_clmul = 0;

/* zlib's crc32(crc, p, n). */
static uint32_t
crc32_of(uint32_t crc, const unsigned char *p, size_t n)
{
    uint32_t c = ~crc;
#ifdef HAVE_CLMUL_PATH
    if (use_clmul && n >= 64) {
        size_t m = n & ~(size_t)15;
        c = crc_clmul(c, p, m);
        p += m;
        n -= m;
    }
#endif
    return ~crc_bytes(c, p, n);
}

static void
put_le(unsigned char *out, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        out[i] = (unsigned char)(v >> (8 * i));
}

static PyObject *
record_headers(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 2 || !PyList_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "record_headers(first_seq: int, payloads: list)");
        return NULL;
    }
    unsigned long long first = PyLong_AsUnsignedLongLong(args[0]);
    if (first == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    PyObject *payloads = args[1];
    Py_ssize_t n = PyList_GET_SIZE(payloads);
    if (n > 0 && (unsigned long long)(n - 1) > UINT64_MAX - first) {
        PyErr_SetString(PyExc_OverflowError, "record sequence past 2**64 - 1");
        return NULL;
    }
    PyObject *out = PyList_New(n);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n && i < PyList_GET_SIZE(payloads); i++) {
        Py_buffer b;
        if (PyObject_GetBuffer(PyList_GET_ITEM(payloads, i), &b, PyBUF_SIMPLE) < 0)
            goto fail;
        if ((unsigned long long)b.len > UINT32_MAX) {
            PyBuffer_Release(&b);
            PyErr_SetString(PyExc_OverflowError, "a record payload of 4 GiB or more");
            goto fail;
        }
        uint64_t seq = (uint64_t)first + (uint64_t)i;
        unsigned char seqb[8];
        put_le(seqb, seq, 8);
        uint32_t crc = crc32_of(crc32_of(0, seqb, 8), (const unsigned char *)b.buf,
                                (size_t)b.len);
        uint32_t len = (uint32_t)b.len;
        PyBuffer_Release(&b);
        PyObject *h = PyBytes_FromStringAndSize(NULL, 16);
        if (h == NULL)
            goto fail;
        unsigned char *hp = (unsigned char *)PyBytes_AS_STRING(h);
        put_le(hp, len, 4);
        put_le(hp + 4, crc, 4);
        memcpy(hp + 8, seqb, 8);
        PyList_SET_ITEM(out, i, h);
    }
    if (PyList_GET_SIZE(payloads) != n) { /* a buffer's owner changed the list meanwhile */
        PyErr_SetString(PyExc_RuntimeError, "payloads changed during record_headers");
        goto fail;
    }
    return out;
fail:
    Py_DECREF(out); /* the slots not yet set are NULL: list_dealloc skips them */
    return NULL;
}

static PyMethodDef methods[] = {
    {"record_headers", (PyCFunction)(void (*)(void))record_headers, METH_FASTCALL,
     "record_headers(first_seq, payloads) -> list of 16-byte record headers"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "sidecar.spool._records",
    .m_doc = "The spool's record headers (CRC-32 with PCLMULQDQ where the CPU has it).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__records(void)
{
    make_table();
#ifdef HAVE_CLMUL_PATH
    __builtin_cpu_init();
    use_clmul = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
#endif
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "CLMUL", use_clmul) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
