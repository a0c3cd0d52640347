"""
The C{chatd} command: C{twistd --nodaemon chatd} in one word, for a
foreground run (a terminal, a container, or a service manager).
"""

import sys


def main(argv=None):
    from twisted.scripts.twistd import run

    args = sys.argv[1:] if argv is None else argv
    sys.argv = ["twistd", "--nodaemon", "--pidfile=", "chatd", *args]
    run()
