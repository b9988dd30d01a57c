"""The command-line interface: parses, calls commands, prints; errors formatted once."""
