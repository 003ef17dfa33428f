"""`lc0distill data repack`: chunks -> pre-shuffled zstd position shards (logic in lc0distill/shards/)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from lc0distill.chunks.sources import MissingDataError, find_chunks
from lc0distill.cli.arguments import positive_int
from lc0distill.errors import ChunkError, Lc0DistillError
from lc0distill.progress import track
from lc0distill.shards.index import side_summary
from lc0distill.shards.repack import RepackSettings, repack


def register(commands: argparse._SubParsersAction) -> None:
    """Add `repack` to the `data` group's subparsers."""
    parser = commands.add_parser(
        "repack", help="repack chunks into pre-shuffled position shards (read once, trained on many times)",
        description="Read chunks (files, folders, .tar archives, globs, @lists), sample their records as training "
                    "does (1 in --sample-rate; held-out chunks keep every record), shuffle across chunks and write "
                    "zstandard shards of packed positions with an index (lc0distill-shards.json) into DIR. The "
                    "train/held-out split is by chunk name, as data.test_ratio splits, so a held-out chunk never "
                    "lands in a training shard. A run reads the shards with data.paths: [DIR]. Interrupted, the "
                    "same command continues where it stopped.")
    parser.add_argument("paths", nargs="+", metavar="DATA", help="chunk files, folders, .tar archives, globs, @lists")
    parser.add_argument("--out", required=True, metavar="DIR", help="the shard folder")
    defaults = RepackSettings()
    parser.add_argument("--sample-rate", type=positive_int, default=defaults.sample_rate, metavar="N",
                        help="keep about 1 training record in N (default %(default)s, lczero's)")
    parser.add_argument("--shard-positions", type=positive_int, default=defaults.shard_positions, metavar="K",
                        help="about K positions per shard file (default %(default)s); also what one job holds "
                             "in memory, at 2,232 bytes a position")
    parser.add_argument("--test-ratio", type=float, default=defaults.test_ratio,
                        help="share of chunks held out by name, as data.test_ratio (default %(default)s; 0: none)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="sampling and shuffling seed (default 0)")
    parser.add_argument("--jobs", type=positive_int, default=max(1, min(os.cpu_count() or 1, 8)), metavar="N",
                        help="processes (default: the CPUs, at most 8)")
    parser.add_argument("--strict", action="store_true", help="stop at the first bad chunk or record")
    parser.add_argument("--json", action="store_true", help="print a summary as one JSON object")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if not 0.0 <= args.test_ratio < 1.0:
        raise Lc0DistillError(f"--test-ratio {args.test_ratio}: a share in [0, 1) is needed")
    listing_errors: list[str] = []

    def skip(error: ChunkError) -> None:
        if isinstance(error, MissingDataError) or args.strict:
            raise error
        listing_errors.append(str(error))

    sources = list(find_chunks(args.paths, on_error=skip))
    settings = RepackSettings(sample_rate=args.sample_rate, shard_positions=args.shard_positions,
                              test_ratio=args.test_ratio, seed=args.seed, strict=args.strict)
    with track("data repack", total=len(sources), unit="chunks") as bar:
        result = repack(sources, Path(args.out), settings, jobs=args.jobs, listing_errors=listing_errors,
                        on_progress=lambda done, total, positions: bar.update(done, positions=positions))
    index = result.index
    summary = {"out": args.out, "chunks": len(index["chunks"]), "records_read": index["records_read"],
               "train": side_summary(index, "train"), "test": side_summary(index, "test"),
               "sampling": index["sampling"], "source_bytes": index["source_bytes"],
               "bad_chunks": index["bad_chunks"] + len(listing_errors), "bad_records": index["bad_records"],
               "bad_examples": index["bad_chunk_examples"] + index["bad_record_examples"],
               "groups_done_before": result.groups_done_before, "seconds": round(result.seconds, 2)}
    positions = summary["train"]["positions"] + summary["test"]["positions"]
    stored = summary["train"]["bytes"] + summary["test"]["bytes"]
    summary["bytes_per_position"] = round(stored / positions, 1) if positions else None
    summary["source_bytes_per_position"] = round(index["source_bytes"] / index["records_read"], 1) \
        if index["records_read"] else None
    if args.json:
        json.dump(summary, sys.stdout, indent=1)
        print()
        return 0
    for problem in summary["bad_examples"]:
        print(f"lc0distill: warning: skipped: {problem}", file=sys.stderr)
    resumed = f" (continued: {result.groups_done_before} shards were already done)" if result.groups_done_before else ""
    print(f"{summary['chunks']:,} chunks, {summary['records_read']:,} records -> {summary['train']['positions']:,} "
          f"training positions in {summary['train']['shards']} shards (1 in {args.sample_rate}), "
          f"{summary['test']['positions']:,} held-out in {summary['test']['shards']}; "
          f"{summary['bad_chunks']} bad chunks, {summary['bad_records']} bad records skipped{resumed}")
    if positions:
        print(f"{stored / 1e6:,.1f} MB: {summary['bytes_per_position']} bytes per position (the chunks: "
              f"{summary['source_bytes_per_position']} per record); {result.seconds:.1f} s -> {args.out}")
    return 0
