"""`python -m aobc`."""

from __future__ import annotations

import sys

from aobc.cli import main

sys.exit(main())
