"""Matches between nets: openings, schedules, players (raw policy or lc0 over UCI), results with error bars."""
