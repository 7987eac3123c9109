"""``python -m testbed.podagent``: run the pod agent (see ``cli``)."""

import sys

from testbed.podagent import cli

sys.exit(cli.main())
