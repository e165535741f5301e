from __future__ import annotations

import sys

from hifly_batch.cli import main

sys.exit(main())
