"""`jit` and its subcommands."""
