"""aobc benchmarks: `python -m benchmarks` (or `./dev bench`) prints one table.

Every figure is measured in the same run; compare ratios, not absolute times, because the
machine is shared and noisy.
"""
