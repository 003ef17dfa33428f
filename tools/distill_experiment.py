"""Does distillation help? One student trained on the data alone, one distilled from a teacher, both
evaluated with the teacher on the same held-out games.

    python tools/distill_experiment.py                 # the default experiment (about 20 min on 2 idle CPU cores)
    python tools/distill_experiment.py --quick         # a smoke run of a few minutes
    python tools/distill_experiment.py --teacher-weight 0.7 --played-games 0 --no-cache --distilled-steps 1800
                                                       # the equal-positions, equal-steps row (data only)

The defaults are the recipe that won in the rows of the issue-13 note (configs/distil-teacher-played.yaml):
teacher weight 1 at temperature 1, 3,000 games the teacher plays against itself (data play) added to the
distilled student's training data, the teacher's outputs from a cache made once, 4,500 steps for the
distilled student (1,800 for the student alone, who overfits its 25k positions long before). Measured from
scratch on 2 idle cores: 18.8 minutes, 52% of the held-out policy-loss gap closed; the lc0 match of the two
students that follows when lc0 is installed (200 games at 1 node) adds about 40 s.

The chunk files (one game each) are split deterministically into training and held-out games by a hash of
each file's name (`--test-ratio` of them held out); the two lists are written into the run folder and given
to the runs as `@list` files in data.paths / data.test_paths, so nothing is written next to the data. Both
students see the same data stream, from the same seed, for the same number of steps; the distilled one adds
the teacher's policy (KL at `--temperature`) and WDL with weight `--teacher-weight`. The students have no
moves-left head (the teacher has none to distil, and it keeps the two runs' losses comparable).

Held-out metrics come from `lc0distill.evaluate.evaluate_net` on every position of the held-out games;
"gap closed" is (alone - distilled) / (alone - teacher) for losses and (distilled - alone) / (teacher - alone)
for accuracy, and the +-2 SE of distilled - alone is a bootstrap over held-out games (positions of one game
are correlated, so games are the unit). Runs are written to OUT/alone and OUT/distilled (replaced if they
exist); the script only imports lc0distill, never the other way round.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lc0distill.chunks.config import DataConfig, make_loader, select_sources
from lc0distill.chunks.sources import find_chunks
from lc0distill.config import RunConfig, load_config
from lc0distill.errors import Lc0DistillError
from lc0distill.evaluate import evaluate_net
from lc0distill.models.store import load_model
from lc0distill.nets import load_net
from lc0distill.train import train

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TEACHER = PROJECT_ROOT.parent / "shared" / "nets" / "maia-1900.pb.gz"
DEFAULT_DATA = PROJECT_ROOT.parent / "shared" / "lc0-selfplay-maia1900"
DEFAULT_OUT = PROJECT_ROOT / "runs" / "distill-experiment"

# (metric, label, lower is better)
ROWS = (("policy_loss", "policy loss", True), ("top1_accuracy", "top-1 accuracy", False),
        ("value_mse", "value MSE", True), ("value_ce", "value CE", True))
TINY_GAP = 0.01  # relative to the teacher's value: below this, the share of the gap is noise


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="distill_experiment.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--teacher", type=Path, default=DEFAULT_TEACHER, help="lc0 .pb.gz net or lc0distill .pt")
    parser.add_argument("--data", nargs="+", default=[str(DEFAULT_DATA)],
                        help="chunk files, folders, globs or @lists (one game per chunk file)")
    parser.add_argument("--student", default="32x4", help="student size, FILTERSxBLOCKS")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps for each student "
                        "(default 1800, --quick 60)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=0.05, help="peak SGD rate (warmup, then cosine to 1%%)")
    parser.add_argument("--test-ratio", type=float, default=0.1, help="share of games held out")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="run folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--teacher-weight", type=float, default=1.0, help="teacher's share of the targets")
    parser.add_argument("--temperature", type=float, default=1.0, help="softmax temperature of the policy KL")
    parser.add_argument("--teacher-schedule", choices=["constant", "linear_decay", "switch_off"], default="constant",
                        help="the teacher weight over the distilled student's steps: kept, decayed linearly to 0 "
                             "from --teacher-schedule-at to the last step, or switched off at --teacher-schedule-at")
    parser.add_argument("--teacher-schedule-at", type=float, default=0.5, metavar="FRACTION",
                        help="share of the distilled steps where the decay starts or the teacher switches off")
    parser.add_argument("--workers", type=int, default=1, help="loader processes for training")
    parser.add_argument("--played-games", type=int, default=None,
                        help="games the teacher plays against itself (lc0distill data play), added to the "
                             "distilled student's training data only: teacher-played, teacher-labelled positions "
                             "(default 3000, --quick 20; 0: none)")
    parser.add_argument("--played-temperature", type=float, default=1.0, help="sampling temperature of those games")
    parser.add_argument("--played-random-plies", type=int, default=4, help="random plies opening those games")
    parser.add_argument("--q-ratio-row", type=float, default=0.0, metavar="Q",
                        help="also train the student alone against the value target Q*q + (1-Q)*z and compare "
                             "its held-out value MSE vs z with the z-only student's (0: no such row)")
    parser.add_argument("--reuse", "--keep-alone", action="store_true", dest="reuse",
                        help="reuse a run of OUT trained with exactly its config (rows that change one student)")
    parser.add_argument("--cache", action=argparse.BooleanOptionalAction, default=True,
                        help="the distilled student reads the teacher's outputs from a teacher cache made once "
                             "(lc0distill teacher cache) instead of running the teacher every step")
    parser.add_argument("--student-lr", type=float, default=None,
                        help="the distilled student's peak rate (default: --lr)")
    parser.add_argument("--distilled-steps", type=int, default=None,
                        help="the distilled student's steps (default: 2.5 x --steps with played games, else --steps)")
    parser.add_argument("--match-games", type=int, default=200,
                        help="games of the distilled student against the student alone in the lc0 engine at "
                             "--match-nodes, when lc0 is installed (0: no match; default %(default)s)")
    parser.add_argument("--match-nodes", type=int, default=1, help="lc0 nodes per move in that match (default 1)")
    parser.add_argument("--quick", action="store_true", help="smoke run: few steps, part of the held-out set")
    args = parser.parse_args(argv)
    if args.steps is None:
        args.steps = 60 if args.quick else 1800
    if args.played_games is None:
        args.played_games = 20 if args.quick else 3000
    if args.quick:
        args.match_games = min(args.match_games, 20)
    if args.distilled_steps is None:
        args.distilled_steps = args.steps * 5 // 2 if args.played_games else args.steps
    if args.steps < 1 or args.batch_size < 1:
        parser.error("--steps and --batch-size must be at least 1")
    if not 0.0 < args.test_ratio < 1.0:
        parser.error("--test-ratio must be between 0 and 1")
    if not 0.0 <= args.teacher_weight <= 1.0:
        parser.error("--teacher-weight must be between 0 and 1")
    if args.temperature <= 0:
        parser.error("--temperature must be > 0")
    if not 0.0 <= args.teacher_schedule_at < 1.0:
        parser.error("--teacher-schedule-at must be in [0, 1)")
    return args


# ----------------------------------------------------------------------------------------------- data

def _split_key(path: str) -> tuple[bytes, str]:
    """A file's place in the split: a hash of its name only, so the split does not depend on where data lives."""
    return hashlib.blake2b(Path(path).name.encode(), digest_size=8).digest(), path


def split_games(data: list[str], test_ratio: float) -> tuple[list[str], list[str]]:
    """(train files, held-out files): the first round(ratio * n) files in hash order are held out.

    Loose chunk files hold one game each; a .tar archive is one unit of the split (all its games on one side).
    """
    files = sorted({str(Path(source.path).resolve()) for source in find_chunks(data)})
    if len(files) < 2:
        raise Lc0DistillError(f"need at least 2 chunk files to hold some out, found {len(files)} in {' '.join(data)}")
    ordered = sorted(files, key=_split_key)
    held = max(1, min(len(files) - 1, round(test_ratio * len(files))))
    return sorted(ordered[held:]), sorted(ordered[:held])


def write_list(path: Path, files: list[str]) -> str:
    path.write_text("".join(f"{name}\n" for name in files))
    return f"@{path}"


# ----------------------------------------------------------------------------------------------- runs

def run_config(args, train_list: str, test_list: str, run_dir: Path, eval_positions: int,
               distil: bool, extra_data: list[str] = (), cache: Path | None = None, steps: int | None = None,
               lr: float | None = None, q_ratio: float = 0.0) -> RunConfig:
    steps = steps or args.steps
    lr = lr or args.lr
    warmup = max(1, steps // 20)
    overrides = [
        f"data.paths={json.dumps([train_list, *extra_data])}", f"data.test_paths={json.dumps([test_list])}",
        "data.sample_rate=1",
        f"data.batch_size={args.batch_size}", "data.shuffle_buffer=32768", f"data.workers={args.workers}",
        f"data.seed={args.seed}", "data.chunk_order=name",
        f"net.size={args.student}", "net.moves_left=false", f"loss.q_ratio={q_ratio}",
        "train.optimizer=sgd", "train.lr.kind=cosine", f"train.lr.lr={lr}", f"train.lr.warmup_steps={warmup}",
        f"train.lr.total_steps={steps}", f"train.lr.min_lr={lr / 100}",
        f"train.steps={steps}", f"train.seed={args.seed}", "train.device=cpu",
        f"train.log_every={max(1, steps // 12)}", "train.eval_every=0",
        f"train.eval_positions={eval_positions}", f"train.checkpoint_every={steps}",
        f"train.run_dir={json.dumps(str(run_dir))}", "export.lc0=false",
    ]
    if distil:
        overrides += [f"teacher.nets={json.dumps([str(args.teacher)])}", f"loss.teacher_weight.weight={args.teacher_weight}",
                      f"loss.temperature.start={args.temperature}", *teacher_schedule(args, steps)]
        if cache is not None:
            overrides.append(f"teacher.cache={json.dumps(str(cache))}")
    return load_config(None, overrides)


def teacher_schedule(args, steps: int) -> list[str]:
    """Overrides of loss.teacher_weight for --teacher-schedule over a run of STEPS steps."""
    at = int(steps * args.teacher_schedule_at)
    if args.teacher_schedule == "linear_decay":
        return ["loss.teacher_weight.kind=linear_decay", f"loss.teacher_weight.start_step={at}",
                f"loss.teacher_weight.end_step={steps}"]
    if args.teacher_schedule == "switch_off":
        return ["loss.teacher_weight.kind=switch_off", f"loss.teacher_weight.off_step={at}"]
    return []


def schedule_text(args) -> str:
    if args.teacher_schedule == "constant":
        return "kept"
    where = f"{args.teacher_schedule_at:.0%} of the steps"
    return f"decayed to 0 from {where}" if args.teacher_schedule == "linear_decay" else f"switched off at {where}"


def played_games(args, out: Path) -> list[str]:
    """The teacher's own games (data play), made once per setting and kept in OUT/played-*."""
    if not args.played_games:
        return []
    from lc0distill.cli import main as cli

    folder = out / f"played-{args.played_games}-t{args.played_temperature:g}-r{args.played_random_plies}-s{args.seed}"
    if len(list(folder.glob("game_*.gz"))) != args.played_games:
        shutil.rmtree(folder, ignore_errors=True)
        started = time.perf_counter()
        code = cli(["data", "play", "--net", str(args.teacher), "--games", str(args.played_games), "--out", str(folder),
                    "--temperature", str(args.played_temperature), "--random-plies", str(args.played_random_plies),
                    "--seed", str(args.seed + 1000)])
        if code != 0:
            raise Lc0DistillError("data play failed")
        print(f"teacher-played games: {args.played_games} in {time.perf_counter() - started:,.0f}s -> {folder}")
    return [str(folder)]


def teacher_cache(args, out: Path, data: list[str]) -> Path | None:
    """A teacher cache over everything the distilled student reads (and the held-out games)."""
    if not args.cache:
        return None
    from lc0distill.cli import main as cli

    folder = out / "teacher-cache"
    started = time.perf_counter()
    if cli(["teacher", "cache", *data, "--teacher", str(args.teacher), "--out", str(folder)]) != 0:
        raise Lc0DistillError("teacher cache failed")
    print(f"teacher cache: {time.perf_counter() - started:,.0f}s -> {folder}")
    return folder


def train_student(name: str, config: RunConfig) -> tuple[torch.nn.Module, float]:
    run_dir = Path(config.train.run_dir)
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a fresh run: never resume an older experiment's checkpoint
    teacher = f"teacher weight {config.loss.teacher_weight.weight}, T {config.loss.temperature.start}" \
        if config.teacher.nets else "no teacher"
    print(f"\n== {name}: {config.net.filters}x{config.net.blocks}, {config.train.steps} steps of "
          f"{config.data.batch_size}, {teacher} -> {run_dir}", flush=True)
    started = time.perf_counter()
    result = train(config, log=lambda line: print(f"  [{name}] {line}", flush=True))
    seconds = time.perf_counter() - started
    print(f"  [{name}] done in {seconds:,.0f}s ({result.positions_per_second:,.0f} pos/s)", flush=True)
    return load_model(run_dir / "final.pt"), seconds


# ----------------------------------------------------------------------------------------------- evaluation

class CachedTeacher:
    """The teacher's outputs on the held-out batches, computed once (they are the same tensors for every net)."""

    def __init__(self, net):
        self.net, self.cache = net, {}

    def __call__(self, planes: torch.Tensor):
        key = id(planes)
        if key not in self.cache:
            self.cache[key] = self.net(planes)
        return self.cache[key]


def held_out_games(data: DataConfig, limit: int | None) -> list[list]:
    """The held-out positions as batches, one list per game (file), every record read once."""
    _, sources = select_sources(data)
    games, positions = [], 0
    for source in sources:
        loader = make_loader(data.model_copy(update={"workers": 0, "shuffle_buffer": 0}), [source], passes=1,
                             sample_rate=1)
        batches = list(loader)
        if batches:
            games.append(batches)
            positions += sum(len(b) for b in batches)
        if limit is not None and positions >= limit:
            break
    return games


def per_game_metrics(net, games: list[list], teacher=None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(positions per game, metric -> per-game means) from evaluate_net on each game."""
    sizes, values = [], {}
    for batches in games:
        metrics = evaluate_net(net, batches, None, teacher)
        sizes.append(metrics["positions"])
        for name, value in metrics.items():
            if name != "positions" and value is not None:
                values.setdefault(name, []).append(value)
    return np.array(sizes, dtype=float), {name: np.array(v) for name, v in values.items()}


def pooled(sizes: np.ndarray, per_game: np.ndarray) -> float:
    return float((sizes * per_game).sum() / sizes.sum())


def bootstrap_se(sizes: np.ndarray, a: np.ndarray, b: np.ndarray, seed: int, draws: int = 2000) -> float:
    """Standard error of pooled(b) - pooled(a), resampling games."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(sizes), size=(draws, len(sizes)))
    weights = sizes[picks]
    diffs = (weights * (b[picks] - a[picks])).sum(axis=1) / weights.sum(axis=1)
    return float(diffs.std(ddof=1))


def gap_closed(alone: float, distilled: float, teacher: float, lower_better: bool) -> tuple[str, str]:
    gap = (alone - teacher) if lower_better else (teacher - alone)
    gain = (alone - distilled) if lower_better else (distilled - alone)
    if gap <= 0:
        return "n/a", "student alone already matches or beats the teacher: no gap to close"
    share = f"{100 * gain / gap:.0f}%"
    if gap < TINY_GAP * max(abs(teacher), 1e-9):
        return share, f"the gap is tiny ({gap:.4f}): the share is mostly noise"
    return share, ""


def print_table(sizes, metrics: dict[str, dict[str, np.ndarray]], seed: int) -> None:
    teacher, alone, distilled = metrics["teacher"], metrics["alone"], metrics["distilled"]
    header = f"{'held-out metric':<18}{'teacher':>10}{'alone':>10}{'distilled':>11}{'dist-alone':>12}" \
             f"{'+-2SE':>8}{'gap closed':>12}"
    print(header)
    print("-" * len(header))
    notes = []
    for name, label, lower_better in ROWS:
        if name not in alone or name not in distilled or name not in teacher:
            continue
        t, a, d = (pooled(sizes, m[name]) for m in (teacher, alone, distilled))
        se = bootstrap_se(sizes, alone[name], distilled[name], seed)
        share, note = gap_closed(a, d, t, lower_better)
        print(f"{label:<18}{t:>10.4f}{a:>10.4f}{d:>11.4f}{d - a:>+12.4f}{2 * se:>8.4f}{share:>12}")
        if abs(d - a) < 2 * se:
            note = "; ".join(filter(None, [note, "distilled - alone is within 2 SE (not significant)"]))
        if note:
            notes.append(f"  {label}: {note}")
    if "teacher_agreement" in alone and "teacher_agreement" in distilled:
        a, d = pooled(sizes, alone["teacher_agreement"]), pooled(sizes, distilled["teacher_agreement"])
        print(f"{'top-1 = teacher':<18}{1.0:>10.4f}{a:>10.4f}{d:>11.4f}{d - a:>+12.4f}")
    print("-" * len(header))
    print("gap closed: (alone - distilled) / (alone - teacher) for losses, (distilled - alone) / (teacher - alone) "
          "for accuracy;\n+-2SE: bootstrap over held-out games of distilled - alone")
    for note in notes:
        print(note)


def engine_match(args, out: Path) -> str | None:
    """The distilled student against the student alone in lc0 (lc0distill match), or why not."""
    if not args.match_games:
        return None
    from lc0distill.engine.locate import EngineNotFound, find_engine
    from lc0distill.match.match import MatchOptions, run_match
    from lc0distill.match.openings import builtin_openings
    from lc0distill.match.players import DEFAULT_ENGINE_OPTIONS, UciLimits
    from lc0distill.match.report import summary

    try:
        find_engine()
    except EngineNotFound as error:
        return f"match in lc0: skipped ({error})"
    games = args.match_games + args.match_games % 2
    options = MatchOptions(engine="lc0", limits=UciLimits(nodes=args.match_nodes), games=games,
                           openings=tuple(builtin_openings()), concurrency=2,
                           engine_options=DEFAULT_ENGINE_OPTIONS)
    outcome = run_match([str(out / "distilled" / "final.pt"), str(out / "alone" / "final.pt")], options,
                        lambda result, results: None)
    if outcome.failure is not None:
        return f"match in lc0: {outcome.failure}"
    p = summary(outcome, options)["pairings"][0]

    def bound(value):
        return "inf" if value is None else f"{value:+.0f}"

    return (f"match in lc0 at {args.match_nodes} node(s), distilled vs alone, {p['games']} games on the built-in "
            f"openings: +{p['wins']} ={p['draws']} -{p['losses']}, Elo {bound(p['elo'])} 95% "
            f"[{bound(p['elo_low'])}, {bound(p['elo_high'])}]")


# ----------------------------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    torch.manual_seed(args.seed)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    try:
        teacher_net = load_net(args.teacher).eval()
        train_files, held_files = split_games([str(p) for p in args.data], args.test_ratio)
        train_list = write_list(out / "train_games.txt", train_files)
        test_list = write_list(out / "heldout_games.txt", held_files)
        print(f"data: {len(train_files)} training and {len(held_files)} held-out chunk files "
              f"(lists in {out}); teacher {args.teacher}")
        limit = 1024 if args.quick else None
        extra = played_games(args, out)
        cache = out / "teacher-cache" if args.cache else None  # made just before a run that needs it
        configs = {
            "alone": run_config(args, train_list, test_list, out / "alone", limit or 10**9, distil=False),
            "distilled": run_config(args, train_list, test_list, out / "distilled", limit or 10**9, distil=True,
                                    extra_data=extra, cache=cache, steps=args.distilled_steps, lr=args.student_lr),
        }
        if args.q_ratio_row:
            configs["alone q+z"] = run_config(args, train_list, test_list, out / "alone-qz", limit or 10**9,
                                              distil=False, q_ratio=args.q_ratio_row)
        games = held_out_games(configs["alone"].data, limit)
        positions = sum(len(b) for game in games for b in game)
        print(f"held out: {positions:,} positions from {len(games)} games")
        students, seconds = {}, {}
        for name, config in configs.items():
            done = Path(config.train.run_dir)
            if args.reuse and (done / "final.pt").exists() and \
                    load_config(done / "config.yaml") == config:
                students[name], seconds[name] = load_model(done / "final.pt"), 0.0
                print(f"\n== {name}: reused {done} (same config)")
                continue
            if config.teacher.cache:
                teacher_cache(args, out, [train_list, test_list, *extra])
            students[name], seconds[name] = train_student(name, config)
    except Lc0DistillError as error:
        print(f"distill_experiment.py: {error}", file=sys.stderr)
        return 2

    print("\nevaluating on the held-out games ...", flush=True)
    cached = CachedTeacher(teacher_net)
    sizes, teacher_metrics = per_game_metrics(cached, games)
    metrics = {"teacher": teacher_metrics}
    for name, net in students.items():
        _, metrics[name] = per_game_metrics(net, games, cached)

    print(f"\nstudent {args.student} x {args.steps} steps of {args.batch_size} (lr {args.lr}, seed {args.seed}); "
          f"distilled: teacher weight {args.teacher_weight} ({schedule_text(args)}), temperature {args.temperature}; "
          f"held out: {int(sizes.sum()):,} positions, {len(sizes)} games")
    print_table(sizes, metrics, args.seed)
    if "alone q+z" in metrics:
        a, b = metrics["alone"]["value_mse"], metrics["alone q+z"]["value_mse"]
        se = bootstrap_se(sizes, a, b, args.seed)
        print(f"value MSE vs z, student alone: z only {pooled(sizes, a):.4f}, q_ratio {args.q_ratio_row:g} "
              f"{pooled(sizes, b):.4f} (difference {pooled(sizes, b) - pooled(sizes, a):+.4f} +- {2 * se:.4f} 2SE)")
    match_line = engine_match(args, out)
    if match_line:
        print(match_line)
    total = time.perf_counter() - started
    print(f"\ntraining: alone {seconds['alone']:,.0f}s, distilled {seconds['distilled']:,.0f}s; "
          f"total time {total:,.0f}s ({total / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
