"""`lc0distill quickstart`: the main job end to end on data the project ships, with nets it trains itself.

1. convert data/quickstart-games.pgn.gz (engine games with evaluations) into lc0 chunks;
2. train a teacher (32x4), a smaller student alone (16x2) and the same student distilled from the teacher,
   each with configs/quickstart.yaml (games held out by chunk, the same for all three);
3. export the distilled student as an lc0 .pb.gz, an ONNX model and an lc0 ONNX .pb.gz, and print teacher vs student alone vs distilled student:
   held-out policy loss, top-1 accuracy, value MSE, training and inference positions/s;
4. play the distilled student against the student alone (raw policy, the built-in openings): Elo +- interval.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from rich.console import Console

from lc0distill.chunks.config import make_loader
from lc0distill.shards.select import select_sources
from lc0distill.cli import data_from_pgn
from lc0distill.config import RunConfig, load_config
from lc0distill.errors import Lc0DistillError
from lc0distill.evaluate import evaluate_net
from lc0distill.match.match import MatchOptions, run_match
from lc0distill.match.openings import builtin_openings
from lc0distill.match.report import summary
from lc0distill.export.exporter import ExportOptions, ExportTarget, export_net
from lc0distill.export.onnx_graph import build_onnx
from lc0distill.export.runtime import built_onnx_net
from lc0distill.models.net import count_parameters
from lc0distill.models.store import load_model
from lc0distill.report.plot import plot_runs

PROJECT_ROOT = Path(__file__).resolve().parents[2]
GAMES = PROJECT_ROOT / "data" / "quickstart-games.pgn.gz"
RECIPE = PROJECT_ROOT / "configs" / "quickstart.yaml"
# (name, size, distilled, steps as a multiple of the recipe's). Training the teacher longer overfits this
# small sample (3x the steps: held-out policy loss 3.36 against 3.03), so all three get the same steps.
RUNS = (("teacher", "32x4", False, 1), ("student alone", "16x2", False, 1), ("distilled student", "16x2", True, 1))
MATCH_GAMES = 200  # 100 built-in openings, each with both colours: about +-40 Elo at 95%, seconds for 16x2 nets
STEPS = 5


def register(groups: argparse._SubParsersAction) -> None:
    parser = groups.add_parser(
        "quickstart", help="train a teacher and distil a student on the built-in sample (a few minutes on a CPU)",
        description="Convert the shipped engine games to lc0 chunks, train a teacher, a student alone and a "
                    "student distilled from the teacher, export the distilled student and compare the three "
                    "on held-out games. Needs no data of yours.")
    parser.add_argument("--out", default="runs/quickstart", help="folder for chunks and runs (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=None, help="training steps per net (default: the recipe's)")
    parser.add_argument("--fresh", action="store_true", help="start over instead of resuming runs in --out")
    parser.set_defaults(run=run_quickstart)


def _convert(out: Path, console: Console) -> Path:
    chunks = out / "chunks"
    if chunks.is_dir() and any(chunks.glob("game_*.gz")):
        console.print(f"[bold]1/{STEPS}[/] chunks already in {chunks}")
        return chunks
    if not GAMES.exists():
        raise Lc0DistillError(f"{GAMES} is missing: run python tools/make_quickstart_pgn.py to make it")
    console.print(f"[bold]1/{STEPS}[/] converting {GAMES.name} to lc0 chunks")
    args = argparse.Namespace(pgns=[str(GAMES)], out=str(chunks), input_format="1", jobs=os.cpu_count() or 1)
    data_from_pgn.run(args)
    return chunks


def _config(chunks: Path, out: Path, name: str, size: str, distilled: bool, steps: int | None,
            multiple: int) -> RunConfig:
    overrides = [f"data.paths=[{chunks}]", f"net.size={size}", f"train.run_dir={out / name.replace(' ', '-')}"]
    if distilled:
        overrides.append(f"teacher.nets=[{out / 'teacher' / 'final.pt'}]")
    base = load_config(RECIPE, overrides)
    steps = (steps or base.train.steps) * multiple
    warmup = min(base.train.lr.warmup_steps, steps // 4)
    overrides += [f"train.steps={steps}", f"train.lr.total_steps={steps}", f"train.lr.warmup_steps={warmup}",
                  f"train.checkpoint_every={max(1, steps // 2)}"]
    return load_config(RECIPE, overrides)


def _inference_rate(net, batches) -> float:
    """Positions/s of the net's forward pass alone, on the held-out batches (already built)."""
    net.eval()
    with torch.no_grad():
        net(batches[0].planes)
        start, positions = time.perf_counter(), 0
        for batch in batches:
            net(batch.planes)
            positions += len(batch)
    return positions / (time.perf_counter() - start)


def _onnx_rate(net, batches) -> float:
    """Positions/s of the same net exported to ONNX and run by onnxruntime, as an engine would run it."""
    runtime = built_onnx_net(build_onnx(net).SerializeToString(), net.config, f"{net.config.name}.onnx")
    inputs = [batch.planes.numpy() for batch in batches]
    runtime.run(inputs[0])
    start = time.perf_counter()
    for planes in inputs:
        runtime.run(planes)
    return sum(len(p) for p in inputs) / (time.perf_counter() - start)


def run_quickstart(args: argparse.Namespace) -> int:
    from lc0distill.train import train

    console = Console()
    out = Path(args.out)
    chunks = _convert(out, console)
    rows = []
    for index, (name, size, distilled, multiple) in enumerate(RUNS, start=2):
        config = _config(chunks, out, name, size, distilled, args.steps, multiple)
        console.print(f"[bold]{min(index, 3)}/{STEPS}[/] training the {name} ({size}) -> {config.train.run_dir}")
        result = train(config, log=lambda line: console.print(line, soft_wrap=True, markup=False),
                       resume=not args.fresh)
        rows.append((name, config, result.positions_per_second))
    console.print(f"[bold]4/{STEPS}[/] comparing on held-out games")
    _, test_sources = select_sources(rows[0][1].data)
    held_out = list(make_loader(rows[0][1].data, test_sources, passes=1, sample_rate=1))
    columns = ("net", "size", "params", "policy loss", "top-1", "value MSE", "train/s", "infer/s", "onnx/s")
    lines = [columns]
    for name, config, train_rate in rows:
        net = load_model(Path(config.train.run_dir) / "final.pt")
        metrics = evaluate_net(net, held_out)
        lines.append((name, config.net.name, f"{count_parameters(net):,}", f"{metrics['policy_loss']:.4f}",
                      f"{metrics['top1_accuracy']:.3f}", f"{metrics['value_mse']:.4f}", f"{train_rate:,.0f}",
                      f"{_inference_rate(net, held_out):,.0f}", f"{_onnx_rate(net, held_out):,.0f}"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
    print(f"held out: {sum(len(b) for b in held_out)} positions from {len(test_sources)} games")
    for line in lines:
        print("  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths))))
    print("policy loss: cross-entropy with the played move; value MSE: (W - L - result)^2; "
          "train/s, infer/s (PyTorch), onnx/s (exported, onnxruntime): positions per second")
    run_dir = Path(rows[2][1].train.run_dir)
    console.print(f"distilled student exported for lc0: {run_dir / 'final.pb.gz'}", soft_wrap=True)
    student = load_model(run_dir / "final.pt")
    for target, name in ((ExportTarget.ONNX, "student.onnx"), (ExportTarget.LC0_ONNX, "student-onnx.pb.gz")):
        report = export_net(student, run_dir / name, ExportOptions(target=target))
        print(f"  and as {target.value}: {report.path}\n    onnxruntime vs PyTorch, {report.check.describe()}")
    picture = plot_runs([Path(config.train.run_dir) for _, config, _ in rows], out / "curves.png",
                        title="quickstart: teacher, student alone, distilled student")
    print(f"training curves of the three runs: {picture}")
    console.print(f"[bold]5/{STEPS}[/] distilled student against the student alone: {MATCH_GAMES} games")
    print(_match_line(run_dir / "final.pt", Path(rows[1][1].train.run_dir) / "final.pt", out / "match.pgn"))
    return 0


def _match_line(distilled: Path, alone: Path, pgn: Path) -> str:
    """A short built-in match by the raw policy (what lc0 plays at 1 node), its games in `pgn`."""
    pgn.unlink(missing_ok=True)  # the quick start's own file: a new match each time
    options = MatchOptions(engine="policy", games=MATCH_GAMES, openings=tuple(builtin_openings()),
                           concurrency=16, pgn=pgn)
    pairing = summary(run_match([str(distilled), str(alone)], options, lambda result, results: None),
                      options)["pairings"][0]
    elo, low, high = (pairing[key] for key in ("elo", "elo_low", "elo_high"))
    elo_text = f"{elo:+.0f}" if elo is not None else ("+inf" if (pairing["score"] or 0) > 0.5 else "-inf")
    interval = f"95% [{low:+.0f}, {high:+.0f}]" if low is not None and high is not None else "(interval unbounded)"
    return (f"distilled vs alone (argmax of the raw policy, {pairing['games']} games, built-in openings): "
            f"+{pairing['wins']} ={pairing['draws']} -{pairing['losses']}, Elo {elo_text} {interval}, "
            f"LOS {'-' if pairing['los'] is None else format(100 * pairing['los'], '.0f') + '%'}; games in {pgn}")
