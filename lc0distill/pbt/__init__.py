"""Population-based training of students on Ray Tune (an optional extra: pip install 'lc0distill[pbt]').

config: the pbt section; hyper: the search, explore, a member's config; member: the Tune trainable;
driver: the experiment; report: the table, the PNG and the best net.
"""
