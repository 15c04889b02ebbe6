"""``python -m connector.cli``: the ``wa-relay`` command."""

import sys

from connector.cli.program import main

sys.exit(main())
