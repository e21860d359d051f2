"""`python3 -m hostd` is `jit-hostd`."""

import sys

from .daemon import main

sys.exit(main())
