"""``python -m gentest`` is the ``gentest`` command."""

import sys

from gentest.cli import main

sys.exit(main())
