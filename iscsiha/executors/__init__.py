"""Executors: the only modules that touch the outside world, one per world."""
