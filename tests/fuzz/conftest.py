"""Hypothesis profiles of the property-based tests (tests/fuzz).

``ci`` (the default) is bounded and derandomized: the same examples on every run, so a CI
failure reproduces locally and the suite's time stays predictable. ``long``
(``LIGHTBOX_FUZZ=long``, what ``bench/run.py robustness fuzz`` runs) draws many more, random
examples for manual runs; its budget per test is ``LIGHTBOX_FUZZ_EXAMPLES`` (default 5000).
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=100,
    deadline=None,  # the machine is shared: wall time per example is noise
    derandomize=True,
    database=None,  # no example database (.hypothesis/ keeps only caches, ignored by git)
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile(
    "long",
    max_examples=int(os.environ.get("LIGHTBOX_FUZZ_EXAMPLES", "5000")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile(os.environ.get("LIGHTBOX_FUZZ", "ci"))
