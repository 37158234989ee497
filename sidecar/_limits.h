/*
 * sidecar/_limits.h: the ranges of sidecar/parse/fields.py that the C extensions check, one copy
 * for all of them (sidecar/parse/_accessscan.c, sidecar/parse/_bodyscan.c,
 * sidecar/join/_bodylines.c). Each mirrors the fields.py constant named beside it: change both
 * together (tests/unit/test_native.py reads this file and compares, and the extensions' tests
 * compare them with their pure twins on the ranges' edges).
 */
#ifndef SIDECAR_LIMITS_H
#define SIDECAR_LIMITS_H

#define TIME_MIN 0.0                 /* fields.TIME_MIN: the epoch */
#define TIME_MAX 4102444800.0        /* fields.TIME_MAX: 2100-01-01T00:00:00Z */
#define MS_FROM 1e11                 /* fields._MS_FROM: an epoch above is in milliseconds */
#define DURATION_MAX_MS 2592000000.0 /* fields.DURATION_MAX_MS: 30 days */

#endif
