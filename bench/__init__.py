"""tokenworks benchmarks: suites over the public API, results as data, reports made from data.

Not part of the installed package; ``tokenworks bench`` finds this folder in the source
checkout (or via ``--bench-dir`` / ``$TOKENWORKS_BENCH``).
"""
