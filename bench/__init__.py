"""
chatd-bench: chatd's own load generator and benchmark scenarios.

See docs/benchmarks.md for the scenarios, the commands and the results.
"""
