"""
chatd's stores: SQL only, one module per area. Methods are coroutines that
run C{_txn} functions in the database's thread pool.
"""

# The largest id (and integer) both databases store: a signed 64-bit one.
ID_MAX = 2**63 - 1


def now_ms(clock):
    """
    The time of C{clock} (an L{IReactorTime}) in milliseconds.
    """
    return int(clock.seconds() * 1000)
