"""`lc0distill quickstart`: distillation shown on equal terms, end to end, in a few minutes on a CPU.

With a real teacher (maia-1900, fetched once by `lc0distill nets get`, or --teacher NET):
1. the teacher plays games against itself (data play --targets played: each record labelled with the played
   move one-hot and the result, as a game record is); a tenth of the games are held out;
2. its outputs on the training positions are cached once (teacher cache);
3. two students train on the same positions for the same steps from the same seed (configs/quickstart.yaml):
   one on the games' own labels (hard), one distilled from the teacher;
4. the teacher and both students are scored on the held-out games relabelled by the teacher (policy loss
   against its policy, top-1 against its best move, value MSE against the result); the distilled student is
   exported as an lc0 net and ONNX;
5. the raw-policy match of distilled against hard (no engine needed): Elo with its 95% interval.
Without a real teacher (no network, say) it says why in one line and trains a teacher of its own on the engine
games the project ships (data/quickstart-games.pgn.gz) instead: then the labels are those games' moves.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console

from lc0distill.chunks.config import make_loader
from lc0distill.chunks.sources import find_chunks
from lc0distill.cli import data_from_pgn
from lc0distill.cli.arguments import positive_int
from lc0distill.config import RunConfig, load_config
from lc0distill.errors import Lc0DistillError
from lc0distill.evaluate import evaluate_net
from lc0distill.export.exporter import ExportOptions, ExportTarget, export_net
from lc0distill.export.runtime import built_onnx_net
from lc0distill.match.match import MatchOptions, run_match
from lc0distill.match.openings import builtin_openings
from lc0distill.match.report import summary
from lc0distill.models.net import count_parameters
from lc0distill.models.store import load_model
from lc0distill.nets import load_inference_net
from lc0distill.report.plot import plot_runs
from lc0distill.shards.select import select_sources

PROJECT_ROOT = Path(__file__).resolve().parents[2]
GAMES = PROJECT_ROOT / "data" / "quickstart-games.pgn.gz"
RECIPE = PROJECT_ROOT / "configs" / "quickstart.yaml"
REAL_TEACHER = "maia-1900"
OWN_TEACHER_SIZE = "32x4"  # the fallback's teacher, trained here on the shipped games
MATCH_GAMES = 200  # 100 built-in openings, each with both colours: about +-40 Elo at 95%, seconds for 16x2 nets
STEPS = 6


@dataclass
class Trained:
    name: str
    config: RunConfig
    positions_per_second: float

    @property
    def final(self) -> Path:
        return Path(self.config.train.run_dir) / "final.pt"


def register(groups: argparse._SubParsersAction) -> None:
    parser = groups.add_parser(
        "quickstart", help="distil maia-1900 into a small student, against one trained on the same games alone",
        description="maia-1900 (fetched once into the cache, or --teacher) plays games; two students train on "
                    "the same positions for the same steps, one on the games' own labels, one distilled from "
                    "the teacher; both are scored on held-out games and play each other. Needs no data of "
                    "yours; without the download it trains a teacher of its own on the shipped games.")
    parser.add_argument("--out", default="runs/quickstart", help="folder for games and runs (default: %(default)s)")
    parser.add_argument("--teacher", metavar="NET", help=f"an lc0 net to teach (default: {REAL_TEACHER}, "
                                                         "downloaded once by lc0distill nets get)")
    parser.add_argument("--games", type=positive_int, default=400, help="games the teacher plays (default: "
                                                                        "%(default)s)")
    parser.add_argument("--steps", type=int, default=None, help="training steps per net (default: the recipe's)")
    parser.add_argument("--fresh", action="store_true", help="start over instead of resuming runs in --out")
    parser.set_defaults(run=run_quickstart)


def run_quickstart(args: argparse.Namespace) -> int:
    console = Console()
    started = time.perf_counter()
    out = Path(args.out)
    teacher = _real_teacher(args, console)
    if teacher is not None:
        students, held_out, teacher_net = _with_real_teacher(teacher, args, out, console)
        labels = "policy loss: cross-entropy with the teacher's policy; top-1: its best move"
    else:
        students, held_out, teacher_net = _with_own_teacher(args, out, console)
        labels = "policy loss: cross-entropy with the played move; top-1: the played move"
    console.print(f"[bold]5/{STEPS}[/] scoring on held-out games")
    _compare(teacher_net, students, held_out, labels)
    hard, distilled = students
    _export(distilled)
    picture = plot_runs([Path(s.config.train.run_dir) for s in students], out / "curves.png",
                        title="quickstart: hard labels and distilled, same positions and steps")
    print(f"training curves of the two students: {picture}")
    console.print(f"[bold]6/{STEPS}[/] distilled against hard: {MATCH_GAMES} games")
    print(_match_line(distilled.final, hard.final, out / "match.pgn"))
    print(f"quick start done in {time.perf_counter() - started:,.0f} s")
    return 0


# ----------------------------------------------------------------------------------------------- the teacher

def _real_teacher(args: argparse.Namespace, console: Console) -> Path | None:
    """--teacher, or maia-1900 from the cache (downloaded once); None, said in one line, when it cannot be had."""
    from lc0distill.registry import get_net

    if args.teacher:
        if not Path(args.teacher).is_file():
            raise Lc0DistillError(f"--teacher {args.teacher}: no such file")
        return Path(args.teacher)
    console.print(f"[bold]1/{STEPS}[/] the teacher: {REAL_TEACHER} (lc0distill nets get {REAL_TEACHER})")
    try:
        return get_net(REAL_TEACHER, log=lambda line: console.print(line, soft_wrap=True, markup=False))
    except Lc0DistillError as error:
        console.print(f"no {REAL_TEACHER} ({error}): the quick start trains a teacher of its own on the shipped "
                      "games instead", soft_wrap=True, markup=False)
        return None


def _cli(argv: list[str]) -> None:
    from lc0distill.cli import main

    if main(argv) != 0:
        raise Lc0DistillError(f"lc0distill {' '.join(argv)} failed")


def _with_real_teacher(teacher: Path, args, out: Path, console: Console):
    games = out / "games"
    if len(list(games.glob("game_*.gz"))) != args.games:  # new games: whatever was made from others goes
        console.print(f"[bold]2/{STEPS}[/] {teacher.name} plays {args.games} games against itself -> {games}")
        _remove_chunks(games)
        _cli(["data", "play", "--net", str(teacher), "--games", str(args.games), "--out", str(games), "--targets",
              "played", "--random-plies", "4", "--seed", "0"])
        args.fresh = True
    base = _config(games, out, "hard", args.steps)
    train_sources, test_sources = select_sources(base.data)
    cache, labelled = out / "teacher-cache", out / "held-out-labelled"
    train_list = _write_list(out / "train.txt", train_sources)
    test_list = _write_list(out / "held-out.txt", test_sources)
    if args.fresh or not (cache / "manifest.json").exists() or not any(labelled.glob("game_*.gz")):
        console.print(f"[bold]3/{STEPS}[/] the teacher's outputs: cached for training, labels of the held-out games")
        _cli(["teacher", "cache", train_list, "--teacher", str(teacher), "--out", str(cache)])
        _remove_chunks(labelled)
        _cli(["data", "label", test_list, "--teacher", str(teacher), "--out", str(labelled)])
    distilled = _config(games, out, "distilled", args.steps, [f"teacher.nets=[{teacher}]", f"teacher.cache={cache}"])
    students = _train([("hard", base), ("distilled", distilled)], args, console)
    held_out = list(make_loader(base.data, list(find_chunks([labelled])), passes=1, sample_rate=1))
    return students, held_out, load_inference_net(teacher)


def _with_own_teacher(args, out: Path, console: Console):
    chunks = _convert(out, console)
    own = _config(chunks, out, "teacher", args.steps, [f"net.size={OWN_TEACHER_SIZE}"])
    console.print(f"[bold]3/{STEPS}[/] training a teacher ({OWN_TEACHER_SIZE}) on the shipped games")
    teacher = _train([("teacher", own)], args, console)[0]
    hard = _config(chunks, out, "hard", args.steps)
    distilled = _config(chunks, out, "distilled", args.steps, [f"teacher.nets=[{teacher.final}]"])
    students = _train([("hard", hard), ("distilled", distilled)], args, console)
    _, test_sources = select_sources(hard.data)
    held_out = list(make_loader(hard.data, test_sources, passes=1, sample_rate=1))
    return students, held_out, load_model(teacher.final)


def _convert(out: Path, console: Console) -> Path:
    chunks = out / "chunks"
    if chunks.is_dir() and any(chunks.glob("game_*.gz")):
        console.print(f"[bold]2/{STEPS}[/] chunks already in {chunks}")
        return chunks
    if not GAMES.exists():
        raise Lc0DistillError(f"{GAMES} is missing: run python tools/make_quickstart_pgn.py to make it")
    console.print(f"[bold]2/{STEPS}[/] converting {GAMES.name} to lc0 chunks")
    args = argparse.Namespace(pgns=[str(GAMES)], out=str(chunks), input_format="1", jobs=os.cpu_count() or 1)
    data_from_pgn.run(args)
    return chunks


def _remove_chunks(folder: Path) -> None:
    for path in folder.glob("game_*.gz"):
        path.unlink()


def _write_list(path: Path, sources) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    # absolute: an @list's relative entries are read relative to the list's own folder
    path.write_text("".join(f"{Path(source.path).resolve()}\n" for source in sources))
    return f"@{path}"


# ----------------------------------------------------------------------------------------------- training

def _config(data: Path, out: Path, name: str, steps: int | None, extra: list[str] = ()) -> RunConfig:
    overrides = [f"data.paths=[{data}]", f"train.run_dir={out / name}", *extra]
    base = load_config(RECIPE, overrides)
    steps = steps or base.train.steps
    warmup = min(base.train.lr.warmup_steps, steps // 4)
    overrides += [f"train.steps={steps}", f"train.lr.total_steps={steps}", f"train.lr.warmup_steps={warmup}",
                  f"train.checkpoint_every={max(1, steps // 2)}",
                  f"train.eval_every={-(-steps // 4)}"]  # 4 evaluations at most, however few the steps
    return load_config(RECIPE, overrides)


def _train(runs: list[tuple[str, RunConfig]], args, console: Console) -> list[Trained]:
    from lc0distill.train import train

    trained = []
    for name, config in runs:
        console.print(f"[bold]4/{STEPS}[/] training the {name} student ({config.net.name}, {config.train.steps} "
                      f"steps) -> {config.train.run_dir}" if name != "teacher" else f"  -> {config.train.run_dir}")
        result = train(config, log=lambda line: console.print(line, soft_wrap=True, markup=False),
                       resume=not args.fresh)
        trained.append(Trained(name, config, result.positions_per_second))
    return trained


# ----------------------------------------------------------------------------------------------- results

def _inference_rate(net, batches) -> float:
    """Positions/s of the net's forward pass alone, on the held-out batches (already built)."""
    if hasattr(net, "eval"):
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
    from lc0distill.export.onnx_graph import build_onnx

    runtime = built_onnx_net(build_onnx(net).SerializeToString(), net.config, f"{net.config.name}.onnx")
    inputs = [batch.planes.numpy() for batch in batches]
    runtime.run(inputs[0])
    start = time.perf_counter()
    for planes in inputs:
        runtime.run(planes)
    return sum(len(p) for p in inputs) / (time.perf_counter() - start)


def _compare(teacher, students: list[Trained], held_out: list, labels: str) -> None:
    columns = ("net", "size", "params", "policy loss", "top-1", "value MSE", "train/s", "infer/s", "onnx/s")
    lines = [columns]
    nets = [("teacher", teacher, None)] + [(s.name, load_model(s.final), s.positions_per_second) for s in students]
    for name, net, train_rate in nets:
        metrics = evaluate_net(net, held_out)
        params = f"{count_parameters(net):,}" if isinstance(net, torch.nn.Module) else "-"
        onnx = f"{_onnx_rate(net, held_out):,.0f}" if isinstance(net, torch.nn.Module) else "-"
        lines.append((name, net.config.name, params, f"{metrics['policy_loss']:.4f}", f"{metrics['top1_accuracy']:.3f}",
                      f"{metrics['value_mse']:.4f}", f"{train_rate:,.0f}" if train_rate else "-",
                      f"{_inference_rate(net, held_out):,.0f}", onnx))
    widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
    print(f"held out: {sum(len(b) for b in held_out):,} positions; both students: the same positions, steps and "
          "seed")
    for line in lines:
        print("  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths))))
    print(f"{labels}; value MSE: (W - L - result)^2; train/s, infer/s (PyTorch), onnx/s (exported, onnxruntime): "
          "positions per second")


def _export(distilled: Trained) -> None:
    run_dir = Path(distilled.config.train.run_dir)
    print(f"distilled student exported for lc0: {run_dir / 'final.pb.gz'}")
    student = load_model(distilled.final)
    for target, name in ((ExportTarget.ONNX, "student.onnx"), (ExportTarget.LC0_ONNX, "student-onnx.pb.gz")):
        report = export_net(student, run_dir / name, ExportOptions(target=target))
        print(f"  and as {target.value}: {report.path}\n    onnxruntime vs PyTorch, {report.check.describe()}")


def _match_line(distilled: Path, hard: Path, pgn: Path) -> str:
    """A short built-in match by the raw policy (what lc0 plays at 1 node), its games in `pgn`."""
    pgn.unlink(missing_ok=True)  # the quick start's own file: a new match each time
    options = MatchOptions(engine="policy", games=MATCH_GAMES, openings=tuple(builtin_openings()),
                           concurrency=16, pgn=pgn)
    pairing = summary(run_match([str(distilled), str(hard)], options, lambda result, results: None),
                      options)["pairings"][0]
    elo, low, high = (pairing[key] for key in ("elo", "elo_low", "elo_high"))
    elo_text = f"{elo:+.0f}" if elo is not None else ("+inf" if (pairing["score"] or 0) > 0.5 else "-inf")
    interval = f"95% [{low:+.0f}, {high:+.0f}]" if low is not None and high is not None else "(interval unbounded)"
    return (f"distilled vs hard (argmax of the raw policy, {pairing['games']} games, built-in openings): "
            f"+{pairing['wins']} ={pairing['draws']} -{pairing['losses']}, Elo {elo_text} {interval}, "
            f"LOS {'-' if pairing['los'] is None else format(100 * pairing['los'], '.0f') + '%'}; games in {pgn}")
