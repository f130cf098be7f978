"""pytest-benchmark suites (not part of the test suite): `pytest benchmarks --benchmark-only`."""
