"""The tournament-net ladder: students of several sizes distilled from one teacher, each exported to lc0, its
speed measured in lc0, and played against the teacher at node counts and at a clock (`lc0distill ladder`).

    plan     what the ladder is asked (sizes, limits, games) and each rung's training recipe
    rung     one size: trained (resumed, never retrained once done), exported, scored on held-out games
    speed    nps in lc0 for every net with the same backend and threads
    games    the matches against the teacher, resumable from their PGN
    table    the table (Markdown, JSON) and the PNG of Elo against size
    run      the ladder from start to end, resuming where it stopped
"""
