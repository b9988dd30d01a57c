"""Commands: the work behind the CLI, the console and the agents, the outside world handed in."""
