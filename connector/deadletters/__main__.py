"""``python -m connector.deadletters``: the dead-letter tool (``wa-relay-dlq``)."""

import sys

from connector.deadletters.cli import main

sys.exit(main())
