"""``python -m forkserver`` is the ``forkserver`` command."""

import sys

from .cli import main

sys.exit(main())
