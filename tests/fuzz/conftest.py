"""Hypothesis profiles for the fuzz suite.

``ci`` (the default) keeps the whole suite within a few minutes on 2 cores; run the larger
profile locally with ``pytest tests/fuzz --hypothesis-profile=fuzz-large``.
"""

from datetime import timedelta

from hypothesis import HealthCheck, settings

_common = dict(
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=True,
    print_blob=True,
)
settings.register_profile("ci", max_examples=25, deadline=timedelta(seconds=20), **_common)
_large = {**_common, "derandomize": False}
settings.register_profile("fuzz-large", max_examples=500, deadline=timedelta(seconds=60), **_large)
settings.load_profile("ci")
