"""Reports on training runs: curves of the losses and held-out metrics a run records in metrics.jsonl."""
