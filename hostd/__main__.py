"""`python3 -m hostd` is `jit-hostd`."""

import sys

from hostd.server.daemon import main

sys.exit(main())
