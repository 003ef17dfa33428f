"""A whole match: nets and their names, the schedule, resuming from a PGN, the players, the live progress,
the SPRT stop, and what is handed to the report.

Nets for lc0 may be lc0 `.pb.gz` files, lc0distill `.pt` files or checkpoints (written to a temporary
`.pb.gz` first, as the final net of a run is); for the raw-policy engine any net lc0distill opens.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from lc0distill.errors import Lc0DistillError
from lc0distill.match.game import Adjudication, GameResult
from lc0distill.match.openings import Opening
from lc0distill.match.players import EngineFailure, PolicyPlayer, UciLimits
from lc0distill.match.resume import played_games
from lc0distill.match.runner import Recorder, Stop, UciSetup, play_policy, play_uci
from lc0distill.match.schedule import schedule
from lc0distill.match.stats import Pentanomial, sprt_bounds, sprt_decision, sprt_llr_exact
from lc0distill.match.tally import per_pairing

ENGINES = ("lc0", "policy")


@dataclass(frozen=True)
class Sprt:
    elo0: float
    elo1: float
    alpha: float = 0.05
    beta: float = 0.05


@dataclass(frozen=True)
class MatchOptions:
    engine: str = "lc0"  # or "policy": the raw policy, in-process
    limits: UciLimits = UciLimits(nodes=1)
    games: int = 100  # per pairing
    openings: tuple[Opening, ...] = ()
    openings_source: str = "built-in"
    concurrency: int = 1
    adjudication: Adjudication = Adjudication()
    sprt: Sprt | None = None
    pgn: Path | None = None
    resume: bool = False
    engine_path: str | None = None
    engine_options: dict[str, str] = field(default_factory=dict)
    optional_engine_options: frozenset[str] = frozenset()  # left out for an engine that lacks them
    move_timeout: float = 60.0
    threads: int = 0  # PyTorch / onnxruntime threads for the policy engine (0: the library's default)
    runtime: str = "onnxruntime"  # the policy engine's: "onnxruntime" (2-2.5x PyTorch at batch 4-16 on a CPU) or "pytorch"


@dataclass
class MatchOutcome:
    names: list[str]
    paths: list[str]
    results: list[GameResult]
    resumed: int
    speed: list[dict]  # per net: {"nps": ..., "kind": "lc0 nps" | "positions/s"}
    engine_version: str
    sprt: dict | None
    stopped: str | None  # why the match ended early (SPRT, an engine failure)
    failure: EngineFailure | None
    scheduled: int


def net_names(paths: list[str]) -> list[str]:
    """Short names for the PGN and the tables: the file stems, made unique with the parent folder or a number."""
    names = [Path(p).name.removesuffix(".gz").removesuffix(".pb").removesuffix(".pt").removesuffix(".onnx")
             for p in paths]
    repeated = [names.count(name) > 1 for name in names]  # decided first: renaming one changes the counts
    for i, name in enumerate(list(names)):
        if repeated[i]:
            parent = Path(paths[i]).parent.name
            names[i] = f"{parent}/{name}" if parent else name
    repeated = [names.count(name) > 1 for name in names]
    for i, name in enumerate(list(names)):
        if repeated[i]:
            names[i] = f"{name}#{i + 1}"
    return names


def match_headers(options: MatchOptions) -> dict[str, str]:
    """The PGN tags every game carries, and a resume checks (same engine, limits, openings)."""
    limits = "argmax of the raw policy (lc0 at 1 node)" if options.engine == "policy" else options.limits.describe()
    return {"Engine": options.engine, "Limits": limits, "TimeControl": "-" if options.engine == "policy"
            else options.limits.pgn_time_control, "OpeningSuite": f"{options.openings_source} ({len(options.openings)})",
            "Adjudication": options.adjudication.describe()}


def run_match(paths: list[str], options: MatchOptions, on_result: Callable[[GameResult, list[GameResult]], None]
              ) -> MatchOutcome:
    if len(paths) < 2:
        raise Lc0DistillError("a match needs two nets or more")
    names = net_names(paths)
    specs = schedule(len(paths), list(options.openings), options.games)
    headers = match_headers(options)
    done = played_games(options.pgn, specs, names, headers) if options.resume and options.pgn and options.pgn.exists() else []
    if options.pgn is not None and not options.resume and options.pgn.exists():
        raise Lc0DistillError(f"{options.pgn}: exists: add --resume to continue that match, or name another file")
    left = [spec for spec in specs if spec.key not in {r.spec.key for r in done}]
    stop = Stop()

    def recorded(result: GameResult) -> None:
        on_result(result, recorder.results)
        if options.sprt is not None and sprt_state(recorder.results, options.sprt)["decision"]:
            stop.request(f"SPRT accepts {sprt_state(recorder.results, options.sprt)['decision']}")

    recorder = Recorder(names, options.pgn, headers, recorded)
    recorder.results.extend(done)
    if options.pgn is not None:
        options.pgn.parent.mkdir(parents=True, exist_ok=True)
    if options.sprt is not None and done and sprt_state(done, options.sprt)["decision"]:
        stop.request(f"SPRT accepts {sprt_state(done, options.sprt)['decision']} (from the resumed games)")
    speed, version = _play(paths, names, left, options, recorder, stop)
    return MatchOutcome(names=names, paths=list(paths), results=recorder.results, resumed=len(done), speed=speed,
                        engine_version=version, sprt=sprt_state(recorder.results, options.sprt) if options.sprt else None,
                        stopped=stop.reason, failure=stop.failure, scheduled=len(specs))


def sprt_state(results: list[GameResult], sprt: Sprt) -> dict:
    """LLR of the complete pairs so far (the first two nets), the bounds, and the decision if any."""
    pairing = per_pairing(results).get((0, 1))
    pentanomial = Pentanomial.from_counts(pairing.pentanomial) if pairing else Pentanomial()
    llr = sprt_llr_exact(pentanomial, sprt.elo0, sprt.elo1) if pentanomial.pairs else 0.0  # finite when all pairs are equal
    lower, upper = sprt_bounds(sprt.alpha, sprt.beta)
    return {"elo0": sprt.elo0, "elo1": sprt.elo1, "alpha": sprt.alpha, "beta": sprt.beta, "llr": llr,
            "lower": lower, "upper": upper, "decision": sprt_decision(llr, sprt.alpha, sprt.beta)}


def _play(paths: list[str], names: list[str], specs, options: MatchOptions, recorder: Recorder,
          stop: Stop) -> tuple[list[dict], str]:
    if options.engine == "policy":
        players = _policy_players(paths, names, options)
        if specs:
            play_policy(players, specs, options.adjudication, options.concurrency, recorder, stop)
        return [{"nps": p.speed.nps, "unit": "positions/s"} for p in players], "lc0distill raw policy"
    with tempfile.TemporaryDirectory(prefix="lc0distill-match-") as folder:
        setup = _uci_setup(paths, names, options, Path(folder))
        players = play_uci(setup, specs, options.adjudication, options.concurrency, recorder, stop) if specs else {}
    per_net = [[group[i] for group in players.values()] for i in range(len(paths))]
    speed = []
    for engines in per_net:
        reported = [nps for engine in engines for nps in engine.speed.reported_nps]
        speed.append({"nps": sum(reported) / len(reported) if reported else None, "unit": "lc0 nps"})
    version = next((e.version for group in players.values() for e in group), "lc0")
    return speed, version


def _policy_players(paths: list[str], names: list[str], options: MatchOptions) -> list[PolicyPlayer]:
    import torch

    from lc0distill.nets import load_fast_inference_net

    if options.threads:
        torch.set_num_threads(options.threads)
    players = []
    for path, name in zip(paths, names):
        players.append(PolicyPlayer(load_fast_inference_net(path, options.runtime, options.threads), name))
    return players


def _uci_setup(paths: list[str], names: list[str], options: MatchOptions, folder: Path) -> UciSetup:
    from lc0distill.engine.locate import find_engine
    from lc0distill.nets import lc0_weights_file

    binary = find_engine(options.engine_path)
    weights = [lc0_weights_file(path, folder / f"net{i}.pb.gz") for i, path in enumerate(paths)]
    return UciSetup(binary=binary, weights=weights, names=names, options=dict(options.engine_options),
                    limits=options.limits, move_timeout=options.move_timeout,
                    optional_options=options.optional_engine_options)

