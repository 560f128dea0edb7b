"""``python -m cnnfast.bench``: print the benchmark table."""

from . import main

raise SystemExit(main())
