"""Commands: the work behind the CLI, the console and the agents, given an Env."""
