"""The C extensions of the hot path; everything else is in pyproject.toml.

`optional=True`: a machine without a C compiler still installs, and the hot path then uses the
pure-Python twins (same results, slower; see sidecar/native.py).
"""

from setuptools import Extension, setup

# Headers some of the sources include: `depends` puts them in the sdist (setuptools >= 68.1) and
# rebuilds an extension when one changes.
HEADERS = ["sidecar/_round.h", "sidecar/_limits.h"]

setup(
    ext_modules=[
        Extension(name, sources=[source], depends=HEADERS, optional=True)
        for name, source in [
            ("sidecar.parse._bodyscan", "sidecar/parse/_bodyscan.c"),
            ("sidecar.parse._textscan", "sidecar/parse/_textscan.c"),
            ("sidecar.sources._splitlines", "sidecar/sources/_splitlines.c"),
            ("sidecar.parse._accessscan", "sidecar/parse/_accessscan.c"),
            ("sidecar.enrich._ratelimit", "sidecar/enrich/_ratelimit.c"),
            ("sidecar.parse._tailscan", "sidecar/parse/_tailscan.c"),
            ("sidecar.join._bodylines", "sidecar/join/_bodylines.c"),
        ]
    ]
)
