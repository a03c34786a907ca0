"""``python -m dp_agent.cli``: the ``dp-agent`` command."""

from dp_agent.cli.main import main

raise SystemExit(main())
