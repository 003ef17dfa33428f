"""Repacked position shards: chunks read, sampled, shuffled and packed once (data repack), read by training
wherever it reads chunks. format: one block's bytes; index: a shard folder and its blocks as loader sources;
repack: the job that writes them; select: a run's data paths, chunk and shard folders alike."""
