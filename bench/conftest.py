# SPDX-License-Identifier: GPL-2.0-or-later
"""bench/ is not part of the test suite: pytest must never collect anything here
(the benchmarks need root, namespaces and minutes; run them with bench/run.py)."""

collect_ignore_glob = ["*"]
