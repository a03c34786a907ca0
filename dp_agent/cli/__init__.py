"""The ``dp-agent`` command line: one module per group of subcommands."""
