"""Subcommands of the unmask CLI: one module each, with add_arguments(parser) and run(args)."""
