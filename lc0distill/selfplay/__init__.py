"""Data played by a net: games of a net against itself written as lc0 training chunks, in-process (moves
sampled from the raw policy, targets the net's own outputs) or by the lc0 engine's own selfplay."""
