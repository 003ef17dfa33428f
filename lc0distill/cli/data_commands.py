"""`lc0distill data ...`: look into lc0 training chunks."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Iterator

from lc0distill.chunks.decode import decode_record
from lc0distill.chunks.games import Game, reconstruct_games
from lc0distill.chunks.reader import Chunk, read_chunk
from lc0distill.chunks.sources import find_chunks, no_chunks_message
from lc0distill.chunks.validate import CHESS_FIELDS, find_bad_records
from lc0distill.cli import data_from_pgn, data_label, data_play, data_repack, data_stats
from lc0distill.cli.arguments import PATHS_HELP, refuse_shard_folders
from lc0distill.errors import ChunkError
from lc0distill.shards.index import is_shard_folder
from lc0distill.shards.regroup import shard_folder_chunks


def register(groups: argparse._SubParsersAction) -> None:
    data = groups.add_parser("data", help="inspect and convert lc0 training data",
                             description="Inspect and convert lc0 training data.")
    commands = data.add_subparsers(dest="command", metavar="COMMAND", required=True)

    inspect = commands.add_parser(
        "inspect", help="versions, formats, record counts and results of chunks; decode records",
        description="Per chunk: record version, input format(s), record count, game results, and the "
                    "first records decoded (every field, the position as a FEN).")
    inspect.add_argument("paths", nargs="+", metavar="PATH", help=PATHS_HELP)
    inspect.add_argument("--json", action="store_true", help="print one JSON document")
    inspect.add_argument("--records", type=int, default=1, metavar="N",
                         help="decode the first N records of each chunk (default 1)")
    inspect.set_defaults(run=run_inspect)
    data_stats.register(commands)
    data_from_pgn.register(commands)
    data_play.register(commands)
    data_label.register(commands)
    data_repack.register(commands)

    games = commands.add_parser(
        "games", help="rebuild the games stored in chunks",
        description="Rebuild each chunk's games (moves in UCI, standard castling e1g1) and results.")
    games.add_argument("paths", nargs="+", metavar="PATH", help=PATHS_HELP)
    output = games.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print a JSON list of games")
    output.add_argument("--pgn", action="store_true", help="print the games as PGN")
    games.set_defaults(run=run_games)


def _chunks(paths: list[str], errors: list[str], shards: bool = False) -> Iterator[Chunk]:
    """Readable chunks; each unreadable one adds a one-line error and the rest go on. Paths that hold no chunk
    at all are an error too (an empty folder is a wrong path, not an empty answer). `shards`: a shard folder
    gives back the chunks it was made from (shards/regroup.py)."""
    folders = [path for path in paths if shards and is_shard_folder(path)]
    paths = [path for path in paths if path not in folders]
    sources = list(find_chunks(paths, on_error=lambda error: errors.append(str(error)))) if paths else []
    for folder in folders:
        try:
            yield from shard_folder_chunks(folder)
        except ChunkError as error:  # a shard block that cannot be read (a damaged index stops the command)
            errors.append(str(error))
    if not sources and not folders and not errors:
        errors.append(no_chunks_message(paths))
    for source in sources:
        try:
            yield read_chunk(source)
        except ChunkError as error:
            errors.append(str(error))


def _report_errors(errors: list[str]) -> int:
    for message in errors:
        print(f"lc0distill: error: {message}", file=sys.stderr)
    return 2 if errors else 0


def _results(games: list[Game]) -> dict[str, int]:
    counts = {"white": 0, "black": 0, "draw": 0}
    for game in games:
        key = {"1-0": "white", "0-1": "black", "1/2-1/2": "draw"}.get(game.result)
        if key:
            counts[key] += 1
    return counts


def _fen_of_record(games: list[Game], index: int) -> str | None:
    for game in games:
        if game.first_record <= index < game.first_record + len(game.fens):
            return game.fens[index - game.first_record]
    return None


def inspect_chunk(chunk: Chunk, decode_count: int) -> dict:
    records = chunk.records
    games = reconstruct_games(records)
    formats = sorted({int(f) for f in records["input_format"]})
    return {
        "path": chunk.name,
        "version": chunk.version,
        "input_format": formats[0] if len(formats) == 1 else formats,
        "records": len(records),
        "results": _results(games),
        "decoded": [decode_record(records[i], _fen_of_record(games, i)) for i in range(min(decode_count, len(records)))],
        "bad_records": _bad_records(records),
    }


MAX_LISTED_BAD_RECORDS = 100


def _bad_records(records) -> list[dict]:
    """Records unfit for training (not chess, non-finite or out of range): the first 100, with field and reason."""
    bad = find_bad_records(records)
    return [{"record": int(i), "field": f, "reason": r}
            for i, f, r in list(zip(bad.indices, bad.fields, bad.reasons))[:MAX_LISTED_BAD_RECORDS]]


def _print_inspection(report: dict) -> None:
    results = report["results"]
    print(f"{report['path']}: V{report['version']}, input format {report['input_format']}, "
          f"{report['records']} records; results: {results['white']} white, {results['black']} black, "
          f"{results['draw']} draws")
    for index, record in enumerate(report["decoded"]):
        top = ", ".join(f"{move} {_shown(p, '.3f')}" for move, p in list(record["policy"].items())[:5])
        played = f" played {record['played_move']}" if record.get("played_move") else ""
        print(f"  record {index}: {record['fen']}{played}")
        print(f"    result q/d {_shown(record['result_q'], '+.3f')}/{_shown(record['result_d'], '.3f')}  best q/d "
              f"{_shown(record['best_q'], '+.3f')}/{_shown(record['best_d'], '.3f')}  root q "
              f"{_shown(record['root_q'], '+.3f')}  plies left {_shown(record['plies_left'], '.0f')}  "
              f"rule50 {record['rule50_count']}")
        print(f"    policy: {top}")


def _shown(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def run_inspect(args: argparse.Namespace) -> int:
    errors: list[str] = []
    reports = [inspect_chunk(chunk, args.records) for chunk in _chunks(args.paths, errors, shards=True)]
    for report in reports:
        errors += [f"{report['path']}: record {bad['record']}: field {bad['field']}: {bad['reason']} (a bad record: "
                   "training skips it)" for bad in report["bad_records"]]
    if args.json:
        json.dump({"files": reports}, sys.stdout, indent=1, allow_nan=False)
        print()
    else:
        for report in reports:
            _print_inspection(report)
    return _report_errors(errors)


def _game_json(chunk: Chunk, game: Game) -> dict:
    entry = {"path": chunk.name, "moves": game.uci_moves, "result": game.result}
    if game.final_move_ambiguous:
        # V3..V5 do not record the played move: several moves end the game as its result says.
        entry["final_move_candidates"] = [move.uci() for move in game.final_move_candidates]
    return entry


def run_games(args: argparse.Namespace) -> int:
    errors: list[str] = []
    entries = []
    refuse_shard_folders(args.paths, "data games")
    for chunk in _chunks(args.paths, errors):
        bad = find_bad_records(chunk.records)
        not_chess = [(i, field, reason) for i, field, reason in zip(bad.indices, bad.fields, bad.reasons)
                     if field in CHESS_FIELDS]  # (a bad value target leaves the moves in the planes: rebuilt)
        if not_chess:  # a game rebuilt from records that are not chess would be made up: none is printed
            errors += [f"{chunk.name}: record {int(i)}: field {field}: {reason} (not a chess position: the chunk's "
                       "games are not rebuilt)" for i, field, reason in not_chess[:3]]
            continue
        for game in reconstruct_games(chunk.records):
            if args.pgn:
                print(game.to_pgn(event=chunk.name), end="\n\n")
            elif args.json:
                entries.append(_game_json(chunk, game))
            else:
                print(f"{chunk.name}: {game.result} in {len(game.moves)} plies: {' '.join(game.uci_moves)}")
    if args.json:
        json.dump(entries, sys.stdout, indent=1)
        print()
    return _report_errors(errors)
