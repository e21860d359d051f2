"""`python3 -m hostd.cli` is `jit` (DESIGN.md §12: from a source checkout)."""

import sys

from hostd.cli.main import main

sys.exit(main())
