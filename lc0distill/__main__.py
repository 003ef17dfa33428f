from lc0distill.cli import entry_point

entry_point()
