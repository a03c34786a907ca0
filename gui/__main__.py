"""``python -m dp_agent.gui``: start the desktop app."""

import sys

from dp_agent.gui import main

sys.exit(main(sys.argv[1:]))
