"""`lc0distill data label`: chunks (or PGN games) relabelled by a teacher (logic in lc0distill/distill/label.py)."""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from typing import Iterator

import numpy as np

from lc0distill.chunks.pgn import ConvertedGame, convert_pgn_files, next_chunk_index
from lc0distill.chunks.reader import parse_chunk, read_chunk
from lc0distill.chunks.sources import find_chunks
from lc0distill.chunks.writer import GameChunkWriter
from lc0distill.cli.arguments import non_negative_float, positive_int
from lc0distill.distill.label import label_records
from lc0distill.errors import ChunkError, Lc0DistillError
from lc0distill.fileio import make_folder
from lc0distill.progress import track

PGN_SUFFIXES = (".pgn", ".pgn.gz", ".pgn.zst")


def register(commands: argparse._SubParsersAction) -> None:
    """Add `label` to the `data` group's subparsers."""
    parser = commands.add_parser(
        "label", help="chunks or PGN games relabelled by a teacher: its policy and q/d, z kept",
        description="Write one V6 chunk per input chunk or PGN game (game_NNNNNN.gz, numbered after those in "
                    "--out) whose policy is the teacher's softmax over the legal moves and whose orig/root/"
                    "best/played q and d are its raw WDL (moves-left too, where it has the head); the planes, "
                    "the result z, the played move and plies left are kept. Positions from anywhere (CCRL "
                    "games, another net's self-play) become a teacher-labelled dataset.")
    parser.add_argument("data", nargs="+", metavar="DATA",
                        help="chunk files, folders, .tar archives, globs, @lists, or PGN files (.pgn, .pgn.gz, "
                             ".pgn.zst)")
    parser.add_argument("--teacher", nargs="+", required=True, metavar="NET", help="the teacher net(s)")
    parser.add_argument("--weights", nargs="+", type=non_negative_float, metavar="W", help="ensemble weights (default: equal)")
    parser.add_argument("--out", required=True, metavar="DIR", help="the chunk folder (added to)")
    parser.add_argument("--input-format", type=int, default=None,
                        help="for PGN games: the planes' input format (default: the teacher's)")
    parser.add_argument("--batch-size", type=positive_int, default=1024,
                        help="positions per teacher forward pass (default %(default)s)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="print a summary as one JSON object")
    parser.set_defaults(run=run)


def _inputs(data: list[str], input_format: int, errors: list[str]) -> Iterator[tuple[str, np.ndarray]]:
    """(name, records) of every chunk and PGN game; unreadable ones are counted and named, the rest go on."""
    pgns = [d for d in data if d.lower().endswith(PGN_SUFFIXES)]
    chunks = [d for d in data if d not in pgns]
    if chunks:
        for source in list(find_chunks(chunks, on_error=lambda error: errors.append(str(error)))):
            try:
                chunk = read_chunk(source)
            except ChunkError as error:
                errors.append(str(error))
                continue
            yield chunk.name, chunk.records
    for item in convert_pgn_files(pgns, input_format) if pgns else ():
        if isinstance(item, ConvertedGame):
            name = f"{item.path}: game {item.number}"
            yield name, parse_chunk(gzip.decompress(item.chunk), name)[0]
        else:
            errors.append(item.describe())


def run(args: argparse.Namespace) -> int:
    from lc0distill.cli.teacher_commands import open_teacher

    teacher, teacher_format = open_teacher(args.teacher, args.weights, args.device)
    input_format = args.input_format or teacher_format
    if input_format != teacher_format:
        raise Lc0DistillError(f"--input-format {input_format}: the teacher reads input format {teacher_format}")
    writer = GameChunkWriter(args.out, first_index=next_chunk_index(args.out))
    make_folder(args.out, "output folder")
    errors: list[str] = []
    written = positions = 0
    started = time.perf_counter()
    with track("data label", total=None, unit="chunks") as bar:
        for name, records in _inputs(args.data, input_format, errors):
            formats = set(np.unique(records["input_format"]).tolist()) if records["version"].max() >= 5 else set()
            if formats - {input_format}:
                errors.append(f"{name}: input format {sorted(formats)}, the teacher reads {input_format}: skipped")
                continue
            try:
                labelled = label_records(teacher, records, name, args.device, args.batch_size)
            except Lc0DistillError as error:
                errors.append(str(error))
                continue
            writer.write_game(labelled)
            written += 1
            positions += len(labelled)
            bar.update(written, positions=positions)
    seconds = time.perf_counter() - started
    summary = {"out": args.out, "chunks": written, "positions": positions, "skipped": len(errors),
               "errors": errors[:20], "seconds": round(seconds, 2)}
    if args.json:
        json.dump(summary, sys.stdout, indent=1)
        print()
    else:
        print(f"{written} chunks, {positions:,} positions labelled by {' + '.join(args.teacher)} in {args.out} "
              f"({seconds:.1f} s); skipped {len(errors)}")
    for message in errors:
        print(f"lc0distill: error: {message}", file=sys.stderr)
    if written == 0:
        raise Lc0DistillError("nothing was labelled")
    return 2 if errors else 0
