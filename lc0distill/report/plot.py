"""Loss and held-out metric curves of one or several training runs, side by side, as one PNG.

A run folder holds metrics.jsonl (train.Run.record): one JSON object per line, {"kind": "train" | "test" |
"ddp", "step": N, ...values}. "train" lines carry the loss parts (LossReport.scalars(): total, policy, value,
moves_left, policy_distill, value_distill - whichever the run has), positions_per_second, lr, bad_chunks and
possibly teacher_weight, temperature and skipped_steps; "test" lines carry evaluate.METRICS. The figure has
one panel per quantity (PANELS), each run one line labelled with its folder name, x = step.

Reading is forgiving where a run's log can legitimately be odd and strict where the input is wrong:
null / NaN / inf values and unknown keys or kinds are skipped; malformed lines (a line cut short by a killed
process, stray text) are skipped, counted and reported in one warning; a missing folder or file, an
unreadable or empty file, or a file without a single usable line is an Lc0DistillError naming it. A resumed
run appends to metrics.jsonl again from its checkpoint's step: for each kind, a record whose step is not
after the previous one replaces the records from that step on, so the curve shows the run that continued.

matplotlib is imported inside the drawing function only (importing lc0distill stays fast), and the figure is
drawn on the Agg canvas directly - no pyplot, no display, no global figure state to leak - so plot_runs can be
called at the end of every training run inside a long-lived process.
"""

from __future__ import annotations

import io
import json
import math
import os
import sys
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from lc0distill.errors import Lc0DistillError
from lc0distill.fileio import write_atomic

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

METRICS_FILE = "metrics.jsonl"

# Layout, in inches: a grid of COLUMNS panels a row, each cell PANEL_WIDTH x PANEL_HEIGHT (the axes plus room
# for its title, tick labels and x label), under a header holding the title and a legend of LEGEND_COLUMNS
# runs a row. The layout is computed, not left to matplotlib's constrained layout: that pass would double the
# drawing time, and fixed margins make the image the same size and shape whatever the numbers.
# figure_size() gives the PNG's size in pixels.
COLUMNS = 3
PANEL_WIDTH = 4.6
PANEL_HEIGHT = 3.0
MARGIN_LEFT = 0.7  # the first column's y tick labels
MARGIN_RIGHT = 0.25
MARGIN_BOTTOM = 0.55  # the last row's x tick labels and "step"
GAP_WIDTH = 0.75  # between columns: the y tick labels of the next one
GAP_HEIGHT = 0.8  # between rows: x tick labels, "step", the next panel's title
HEADER_HEIGHT = 0.45  # above the first row: room for its panel titles and the legend's margins
TITLE_HEIGHT = 0.4
LEGEND_ROW_HEIGHT = 0.25
LEGEND_COLUMNS = 4  # at most; fewer when the labels are long
LEGEND_CHARACTER_WIDTH = 0.075  # inches, a generous mean at 9 points
LEGEND_ENTRY_EXTRA = 0.75  # inches: the line sample and the spacing of an entry
DPI = 100
XLABEL_OFFSET = 16  # points from the bottom of an axes to the top of its x label: below the tick labels
MARKER_POINTS = 40  # held-out curves of at most this many points mark each evaluation


@dataclass(frozen=True)
class Panel:
    kind: str  # the "kind" of the metrics.jsonl lines holding the value
    key: str
    title: str
    always: bool = False  # drawn (saying "no data") even when no run has a value: the core layout stays put
    percent: bool = False  # a fraction in [0, 1], shown as a percentage
    counter: bool = False  # a count, normally 0 everywhere: whole-number ticks, drawn only once not 0


PANELS: tuple[Panel, ...] = (
    Panel("train", "total", "training loss (total, weighted)", always=True),
    Panel("train", "policy", "training policy loss", always=True),
    Panel("train", "value", "training value loss", always=True),
    Panel("train", "moves_left", "training moves-left loss"),
    Panel("train", "policy_distill", "training policy distillation loss"),
    Panel("train", "value_distill", "training value distillation loss"),
    Panel("test", "policy_loss", "held-out policy loss", always=True),
    Panel("test", "top1_accuracy", "held-out top-1 accuracy", always=True, percent=True),
    Panel("test", "value_mse", "held-out value MSE", always=True),
    Panel("test", "value_ce", "held-out value cross-entropy"),
    Panel("test", "moves_left_mae", "held-out moves-left error (MAE, plies)"),
    Panel("test", "teacher_agreement", "held-out top-1 agreement with teacher", percent=True),
    Panel("train", "lr", "learning rate"),
    Panel("train", "teacher_weight", "teacher weight (alpha)"),
    Panel("train", "temperature", "distillation temperature"),
    Panel("train", "skipped_steps", "skipped steps", counter=True),
    Panel("train", "positions_per_second", "training positions / second"),
    Panel("train", "bad_chunks", "bad chunks skipped", counter=True),
)

Series = tuple[list[float], list[float]]  # steps, values


@dataclass
class RunMetrics:
    """What one metrics.jsonl holds, ready to draw: (kind, key) -> the finite values and their steps."""

    path: Path  # the metrics.jsonl file
    label: str  # the legend label: the run folder's name (more of its path when two runs share a name)
    series: dict[tuple[str, str], Series] = field(default_factory=dict)
    usable_lines: int = 0
    bad_lines: int = 0
    first_bad_line: int | None = None

    def values(self, panel: Panel) -> Series:
        return self.series.get((panel.kind, panel.key), ([], []))


def _warn_stderr(message: str) -> None:
    print(f"lc0distill: warning: {message}", file=sys.stderr)


def _number(value: object) -> float | None:
    """A finite int or float as a float; None for null, NaN, inf, booleans, strings, lists..."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, int) and not -1e300 < value < 1e300:
        return None  # an integer too large for a float
    value = float(value)
    return value if math.isfinite(value) else None


def metrics_file(run: Path) -> Path:
    """The metrics.jsonl of a run folder (a metrics file named directly is taken as it is)."""
    if run.is_file():
        return run
    if not run.exists():
        raise Lc0DistillError(f"{run}: no such run folder")
    path = run / METRICS_FILE
    if not path.is_file():
        raise Lc0DistillError(f"{run}: no {METRICS_FILE} in this folder (not a training run folder?)")
    return path


def read_metrics(run: Path, label: str | None = None,
                 warn: Callable[[str], None] = _warn_stderr) -> RunMetrics:
    """Read a run folder's metrics.jsonl (see the module's docstring for what is skipped and what fails)."""
    path = metrics_file(Path(run))
    try:
        data = path.read_bytes()
    except OSError as error:
        raise Lc0DistillError(f"{path}: cannot read ({error.strerror or error})") from None
    if not data.strip():
        raise Lc0DistillError(f"{path}: empty (the run has recorded no metrics yet)")
    result = RunMetrics(path, label if label is not None else _folder_name(path))
    rows: dict[str, list[tuple[float, dict[str, float]]]] = {}
    loads = json.loads
    for number, line in enumerate(data.splitlines(), 1):
        try:
            entry = loads(line)  # bytes: UTF-8 expected; a decoding error is a ValueError too
        except ValueError:
            if line.strip():  # blank lines are not malformed
                result.bad_lines += 1
                result.first_bad_line = result.first_bad_line or number
            continue
        kind = entry.get("kind") if type(entry) is dict else None
        step = _number(entry.get("step")) if kind is not None else None
        if type(kind) is not str or step is None:
            result.bad_lines += 1
            result.first_bad_line = result.first_bad_line or number
            continue
        result.usable_lines += 1
        values = {}
        for key, value in entry.items():  # the hot loop: _number inlined
            kind_of = type(value)
            if kind_of is float:
                if value - value == 0.0:  # not NaN or inf
                    values[key] = value
            elif kind_of is int and -1e300 < value < 1e300:  # (not bool: type(True) is bool)
                values[key] = float(value)
        values.pop("step", None)
        kept = rows.setdefault(kind, [])
        if kept and kept[-1][0] >= step:  # a resumed run logging again from its checkpoint's step
            del kept[bisect_left(kept, step, key=lambda row: row[0]):]
        kept.append((step, values))
    if not result.usable_lines:
        raise Lc0DistillError(f"{path}: no usable line ({result.bad_lines} malformed, the first is line "
                              f"{result.first_bad_line}; expected one JSON object with kind and step a line)")
    if result.bad_lines:
        warn(f"{path}: skipped {result.bad_lines} malformed line(s), the first is line {result.first_bad_line}")
    for kind, kept in rows.items():
        for step, values in kept:
            for key, value in values.items():
                steps, series = result.series.setdefault((kind, key), ([], []))
                steps.append(step)
                series.append(value)
    return result


def _folder_name(path: Path) -> str:
    return Path(os.path.abspath(path)).parent.name or str(path)


def run_labels(paths: Sequence[Path]) -> list[str]:
    """Legend labels: each run folder's name, with as many parent folders as it takes to tell runs apart."""
    folders = [Path(os.path.abspath(p)).parent.parts for p in paths]
    depth = [1] * len(folders)
    while True:
        labels = ["/".join(parts[-d:]) for parts, d in zip(folders, depth)]
        clashes = [i for i, label in enumerate(labels) if depth[i] < len(folders[i]) and any(
            other == label and folders[j] != folders[i] for j, other in enumerate(labels))]
        if not clashes:
            break
        for i in clashes:
            depth[i] += 1
    seen: dict[str, int] = {}
    for i, label in enumerate(labels):  # the same folder given twice
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            labels[i] = f"{label} ({seen[label]})"
    return labels


def shown_panels(runs: Sequence[RunMetrics], keys: Sequence[str] | None = None) -> list[Panel]:
    """The panels of a figure: the core ones always, the others when some run has a value for them.
    `keys`: only the panels of these keys (and their per-teacher panels), in PANELS' order."""
    if keys is not None:
        return [panel for panel in shown_panels(runs) if panel.key.split("/", 1)[0] in keys]
    def has_data(panel: Panel) -> bool:
        for run in runs:
            values = run.values(panel)[1]
            if values and (not panel.counter or any(values)):
                return True
        return False

    panels = []
    for panel in PANELS:
        if panel.always or has_data(panel):
            panels.append(panel)
        panels += _per_teacher_panels(runs, panel)
    return panels


PER_TEACHER = ("policy_distill", "value_distill", "teacher_weight")  # kickstarting logs these per teacher


def _per_teacher_panels(runs: Sequence[RunMetrics], panel: Panel) -> list[Panel]:
    """A kickstarting run logs `key/<teacher>` (teacher_weight/maia-1900 ...): a panel per teacher, after
    the panel of the key itself."""
    if panel.key not in PER_TEACHER:
        return []
    names = sorted({key.split("/", 1)[1] for run in runs for kind, key in run.series
                    if kind == panel.kind and key.startswith(panel.key + "/")})
    title = panel.title.replace(" (alpha)", " lambda")
    return [Panel(panel.kind, f"{panel.key}/{name}", f"{title}: {name}") for name in names]


@dataclass(frozen=True)
class _Grid:
    columns: int
    rows: int
    width: float  # inches
    height: float
    header: float  # inches above the first row of panels
    legend_rows: int


    legend_columns: int


def _grid(panel_count: int, labels: Sequence[str], title: bool) -> _Grid:
    columns = max(1, min(COLUMNS, panel_count))
    rows = max(1, math.ceil(panel_count / columns))
    width = PANEL_WIDTH * columns
    entry = LEGEND_ENTRY_EXTRA + LEGEND_CHARACTER_WIDTH * max((len(label) for label in labels), default=0)
    legend_columns = max(1, min(LEGEND_COLUMNS, len(labels), int(width // entry)))
    legend_rows = math.ceil(max(len(labels), 1) / legend_columns)
    header = HEADER_HEIGHT + LEGEND_ROW_HEIGHT * legend_rows + (TITLE_HEIGHT if title else 0.0)
    return _Grid(columns, rows, width, PANEL_HEIGHT * rows + header, header, legend_rows, legend_columns)


def figure_size(panel_count: int, labels: Sequence[str], title: bool = False) -> tuple[int, int]:
    """The PNG's (width, height) in pixels for that many panels and runs of these labels."""
    grid = _grid(panel_count, labels, title)
    return round(grid.width * DPI), round(grid.height * DPI)


def build_figure(runs: Sequence[RunMetrics], title: str | None = None, keys: Sequence[str] | None = None) -> Figure:
    """The figure (on an Agg canvas): one axes per shown panel, titled with the panel's title, holding one line
    per run that has values for it (labelled with the run's label); a figure legend names every run."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise Lc0DistillError("drawing the curves needs matplotlib: pip install 'matplotlib>=3.8'") from None
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator, PercentFormatter
    from matplotlib.transforms import ScaledTranslation

    panels = shown_panels(runs, keys)
    grid = _grid(len(panels), [run.label for run in runs], bool(title))
    figure = Figure(figsize=(grid.width, grid.height), dpi=DPI)
    FigureCanvasAgg(figure)
    axes_width = (grid.width - MARGIN_LEFT - MARGIN_RIGHT - (grid.columns - 1) * GAP_WIDTH) / grid.columns
    axes_height = (grid.height - grid.header - MARGIN_BOTTOM - (grid.rows - 1) * GAP_HEIGHT) / grid.rows
    axes = figure.subplots(grid.rows, grid.columns, squeeze=False, gridspec_kw=dict(
        left=MARGIN_LEFT / grid.width, right=1 - MARGIN_RIGHT / grid.width,
        bottom=MARGIN_BOTTOM / grid.height, top=1 - grid.header / grid.height,
        wspace=GAP_WIDTH / axes_width, hspace=GAP_HEIGHT / axes_height)).flatten()
    for ax in axes[len(panels):]:
        ax.remove()
    below_ticks = ScaledTranslation(0, -XLABEL_OFFSET / 72, figure.dpi_scale_trans)
    colors = [f"C{i % 10}" for i in range(len(runs))]
    styles = ["-", "--", ":", "-."]  # past ten runs the colours repeat: the dash pattern tells them apart
    for ax, panel in zip(axes, panels):
        drawn = False
        for index, run in enumerate(runs):
            steps, values = run.values(panel)
            if not steps:
                continue
            few = len(steps) == 1 or (panel.kind == "test" and len(steps) <= MARKER_POINTS)
            ax.plot(steps, values, color=colors[index], linestyle=styles[index // 10 % len(styles)],
                    linewidth=1.3, label=run.label, marker="o" if few else None,
                    markersize=5 if len(steps) == 1 else 3)
            drawn = True
        # title and x label at fixed places: left to matplotlib, each costs a pass measuring the tick labels
        # (together a third of the drawing time), for no difference here (no ticks above, one line below)
        ax.set_title(panel.title, fontsize=10, y=1.0, pad=5)
        ax.tick_params(labelsize=8)
        ax.grid(True, alpha=0.3, linewidth=0.6)
        if drawn:
            ax.set_xlabel("step", fontsize=8)
            ax.xaxis.set_label_coords(0.5, 0.0, transform=ax.transAxes + below_ticks)
            # a few ticks: enough to read a value, and each tick is a good part of the drawing time
            ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
            ax.yaxis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10], integer=panel.counter))
            if panel.percent:
                ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=None))
        else:
            ax.text(0.5, 0.5, "no data recorded", transform=ax.transAxes, ha="center", va="center",
                    color="0.5", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    handles = [Line2D([], [], color=colors[i], linestyle=styles[i // 10 % len(styles)], linewidth=2,
                      label=run.label) for i, run in enumerate(runs)]
    legend_top = 1 - ((TITLE_HEIGHT if title else 0.0) + 0.05) / grid.height
    legend = figure.legend(handles=handles, labels=[run.label for run in runs], loc="upper center",
                           bbox_to_anchor=(0.5, legend_top), ncols=grid.legend_columns, fontsize=9,
                           frameon=False, borderaxespad=0.0, handlelength=2.5, columnspacing=2.0)
    for text in legend.get_texts():  # folder names and titles are plain text: "$" is not TeX math
        text.set_parse_math(False)
    if title:
        figure.suptitle(title, fontsize=12, y=1 - 0.08 / grid.height, va="top", parse_math=False)
    return figure


def render_png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def plot_runs(run_dirs: list[Path], out: Path, title: str | None = None, *,
              warn: Callable[[str], None] = _warn_stderr, keys: Sequence[str] | None = None) -> Path:
    """Draw the curves of the runs in run_dirs side by side and write them to out (a .png, atomically).

    Returns out. Raises Lc0DistillError naming the file for input that cannot be plotted; warns (on stderr by
    default) about malformed lines it skipped."""
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise Lc0DistillError(f"{out}: the plot is a PNG image; give a file name ending in .png")
    if not run_dirs:
        raise Lc0DistillError("no run folder given")
    paths = [metrics_file(Path(run)) for run in run_dirs]
    runs = [read_metrics(path, label, warn) for path, label in zip(paths, run_labels(paths))]
    write_atomic(out, render_png(build_figure(runs, title, keys)))
    return out
