"""``python -m cnnfast.bench``: print the benchmark table."""

import os
import sys

from . import main

try:
    status = main()
    sys.stdout.flush()
except BrokenPipeError:
    # The reader went away (``python -m cnnfast.bench --list | head``): stop quietly, as command-line tools do.
    # Python flushes stdout again at exit, so point it at /dev/null first (the Python documentation's recipe).
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    status = 1
raise SystemExit(status)
