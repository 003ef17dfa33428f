"""Print how closely the lc0 engine agrees with lc0distill on every net variant the exporter writes.

    python tools/engine_table.py [--positions 256] [--json FILE] [--only TEXT]

For each variant of tests/engine/netzoo.py (random and briefly trained), the net is written as LINEAR16 (the
only layer encoding lc0 v0.31 reads; FLOAT16/BFLOAT16/FLOAT32 files are refused, which is checked too) and
evaluated by lc0 on the engine-check positions. Two comparisons per file: lc0 against PyTorch on the file as
lc0distill reads it (same float32 weights: arithmetic only), and lc0 against the net the file was written from
(adds LINEAR16's quantisation), and, for scale, LINEAR16 alone (PyTorch on the file against PyTorch on the
written net). Columns: max |policy probability diff| over legal moves, max |WDL diff| (or |value diff| for
scalar nets), max |moves-left diff| in plies.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lc0distill.engine.check import compare, pytorch_outputs  # noqa: E402
from lc0distill.engine.evaluation import Lc0NetInfo, Lc0Refused, lc0_outputs  # noqa: E402
from lc0distill.engine.positions import engine_check_boards  # noqa: E402
from lc0distill.lc0.weights import read_net, write_net  # noqa: E402
from lc0distill.models.inference import board_planes  # noqa: E402
from tests.engine.netzoo import VARIANTS, random_net, trained_net, training_for  # noqa: E402


def left_out(row: dict) -> str:
    return f" (+{row['left_out']} left out)" if row["left_out"] else ""


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1e}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--positions", type=int, default=256)
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    parser.add_argument("--only", metavar="TEXT", help="only the variants whose name holds TEXT (e.g. attention)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # lc0 runs on one core too; spare the other for whoever shares the machine
    boards = engine_check_boards(args.positions)
    encodings = {f: board_planes(boards, f) for f in sorted({c.input_format for c in VARIANTS.values()})}
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, config in VARIANTS.items():
            if args.only and args.only not in name:
                continue
            for kind in ("random", "trained"):
                net = random_net(config) if kind == "random" else trained_net(config, training_for(name))
                path = Path(folder) / f"{name}-{kind}.pb.gz"
                write_net(net, path)
                start = time.perf_counter()
                info, outputs = lc0_outputs(str(path), boards)
                seconds = time.perf_counter() - start
                encoding = encodings[config.input_format]
                same = compare(boards, info, outputs, read_net(path), encoding=encoding)
                written = compare(boards, info, outputs, net, encoding=encoding)
                pytorch = Lc0NetInfo(str(path), config.input_format, info.policy_format, info.wdl, info.moves_left,
                                     info.min_version, "pytorch")
                linear16 = compare(boards, pytorch, pytorch_outputs(read_net(path), boards, encoding), net,
                                   encoding=encoding)
                refused = []
                for encoding in ("float16", "bfloat16", "float32"):
                    other = Path(folder) / f"{name}-{kind}-{encoding}.pb.gz"
                    write_net(net, other, encoding=encoding)
                    try:
                        lc0_outputs(str(other), boards[:1])
                        refused.append(f"{encoding}: LOADED")
                    except Lc0Refused as error:
                        refused.append(f"{encoding}: {str(error).split('lc0 refuses the net: ')[-1]}")
                rows.append({"variant": name, "kind": kind, "positions": same.positions, "left_out": same.left_out,
                             "lc0_seconds": round(seconds, 2), "same_weights": same.to_json(),
                             "written_net": written.to_json(), "linear16_alone": linear16.to_json(),
                             "other_encodings": refused})
                print(f"{name} {kind}: done ({seconds:.1f} s in lc0)", file=sys.stderr)
    print("| variant | net | lc0 vs file: policy | WDL/value | moves-left | lc0 vs written net: policy | WDL/value "
          "| moves-left | LINEAR16 alone: policy | WDL/value | moves-left | planes | positions |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        cells = []
        for key in ("same_weights", "written_net", "linear16_alone"):
            c = row[key]
            cells += [_fmt(c["policy"]), _fmt(c["wdl"] if c["wdl"] is not None else c["q"]), _fmt(c["mlh"])]
        differ = row["same_weights"]["planes_differ"]
        planes = f"{differ} differ" if differ else "same"
        print(f"| {row['variant']} | {row['kind']} | {' | '.join(cells)} | {planes} "
              f"| {row['positions']}{left_out(row)} |")
    encodings = sorted({r for row in rows for r in row["other_encodings"]})
    print("\nother encodings:", "; ".join(encodings))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
