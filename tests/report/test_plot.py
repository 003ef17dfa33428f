"""`lc0distill plot` and report.plot: curves of synthetic metrics.jsonl files, the PNG, and every bad input."""

from __future__ import annotations

import json
import math
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lc0distill.cli import main
from lc0distill.errors import Lc0DistillError
from lc0distill.report.plot import (PANELS, build_figure, figure_size, plot_runs, read_metrics, run_labels,
                                    shown_panels)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TRAIN = ("training loss (total, weighted)", "training policy loss", "training value loss")
HELD_OUT = ("held-out policy loss", "held-out top-1 accuracy", "held-out value MSE")


def train_line(step: int, distill: bool = False, **extra) -> dict:
    t = step / 1000
    values = {"kind": "train", "step": step, "total": 3 * math.exp(-t) + 0.5, "policy": 2 * math.exp(-t) + 0.4,
              "value": 0.9 - 0.1 * t, "positions_per_second": 9000.0 + step % 7, "lr": 0.02 * (1 - t / 4),
              "bad_chunks": 0}
    if distill:
        values |= {"policy_distill": math.exp(-t), "value_distill": 0.2, "teacher_weight": 1 - t / 4,
                   "temperature": 2.0, "skipped_steps": 0}
    return values | extra


def held_out_line(step: int, distill: bool = False) -> dict:
    t = step / 1000
    return {"kind": "test", "step": step, "policy_loss": 2 - 0.2 * t, "top1_accuracy": 0.3 + 0.05 * t,
            "value_mse": 0.3 - 0.01 * t, "value_ce": None, "moves_left_mae": None,
            "teacher_agreement": 0.5 + 0.05 * t if distill else None, "positions": 5000}


def write_run(folder: Path, lines: list[dict | str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    (folder / "metrics.jsonl").write_text(text)
    return folder


@pytest.fixture
def three_runs(tmp_path) -> list[Path]:
    """A plain run with five evaluations, a distillation run with ten, and a short run evaluated once."""
    baseline = write_run(tmp_path / "baseline", [train_line(s) for s in range(10, 2001, 10)]
                         + [held_out_line(s) for s in range(400, 2001, 400)])
    distill = write_run(tmp_path / "distilled", [
        line for s in range(10, 2001, 10)
        for line in ([train_line(s, distill=True)] + ([held_out_line(s, distill=True)] if s % 200 == 0 else []))]
        + [{"kind": "ddp", "step": 2000, "ranks": 2, "weights_identical": True, "fingerprints": [[1, 2, 3]] * 2}])
    short = write_run(tmp_path / "short", [train_line(s) for s in range(10, 501, 10)] + [held_out_line(500)])
    return [baseline, distill, short]


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def lines_by_panel(figure) -> dict[str, list[str]]:
    return {ax.get_title(): [line.get_label() for line in ax.get_lines()] for ax in figure.axes}


# --------------------------------------------------------------------------------------------- the figure

def test_plot_writes_a_valid_png_of_the_expected_size(three_runs, tmp_path):
    out = tmp_path / "plots" / "runs.png"  # the folder is created
    assert plot_runs(three_runs, out, title="three runs") == out
    data = out.read_bytes()
    runs = [read_metrics(run) for run in three_runs]
    panels = shown_panels(runs)
    # 6 core panels + distillation losses (2), teacher agreement, lr, teacher weight, temperature, pos/s
    assert len(panels) == 13
    labels = ["baseline", "distilled", "short"]
    assert png_size(data) == figure_size(13, labels, title=True) == (3 * 460, 5 * 300 + 45 + 25 + 40)
    from PIL import Image

    with Image.open(out) as image:
        image.verify()
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (1380, 1610)
        assert len(image.getcolors(1 << 24)) > 50  # drawn, not blank
    assert sorted(p.name for p in out.parent.iterdir()) == ["runs.png"]  # no temporary file left


def test_each_run_has_its_line_in_each_panel_it_has_values_for(three_runs):
    runs = [read_metrics(run) for run in three_runs]
    figure = build_figure(runs, title="three runs")
    panels = lines_by_panel(figure)
    for title in TRAIN + HELD_OUT + ("learning rate", "training positions / second"):
        assert panels[title] == ["baseline", "distilled", "short"], title
    for title in ("training policy distillation loss", "training value distillation loss", "teacher weight (alpha)",
                  "distillation temperature", "held-out top-1 agreement with teacher"):
        assert panels[title] == ["distilled"], title
    # absent everywhere, or zero everywhere for the counters: no panel
    for title in ("training moves-left loss", "held-out value cross-entropy", "held-out moves-left error (MAE, plies)",
                  "bad chunks skipped", "skipped steps"):
        assert title not in panels
    assert list(panels) == [p.title for p in PANELS if p.title in panels]  # in PANELS' order
    assert [t.get_text() for t in figure.legends[0].get_texts()] == ["baseline", "distilled", "short"]
    assert figure.get_suptitle() == "three runs"
    ax = next(ax for ax in figure.axes if ax.get_title() == "held-out policy loss")
    baseline, distilled, short = ax.get_lines()
    assert list(baseline.get_xdata()) == [400, 800, 1200, 1600, 2000]
    assert len(distilled.get_xdata()) == 10
    assert list(short.get_xdata()) == [500] and short.get_marker() == "o"  # one evaluation: a marker
    loss = next(ax for ax in figure.axes if ax.get_title() == TRAIN[0])
    assert [len(line.get_xdata()) for line in loss.get_lines()] == [200, 200, 50]
    assert loss.get_lines()[0].get_marker() in (None, "None", "")
    assert all(ax.get_xlabel() == "step" for ax in figure.axes)
    colours = {line.get_label(): line.get_color() for ax in figure.axes for line in ax.get_lines()}
    assert len(set(colours.values())) == 3  # one colour a run, the same in every panel


def test_no_panels_overlap(three_runs):
    figure = build_figure([read_metrics(run) for run in three_runs], title="three runs")
    figure.canvas.draw()
    boxes = [ax.get_tightbbox() for ax in figure.axes]  # axes with their titles and tick labels, in pixels
    for i, a in enumerate(boxes):
        assert a.x0 >= 0 and a.y0 >= 0 and a.x1 <= figure.bbox.width and a.y1 <= figure.bbox.height
        for b in boxes[i + 1:]:
            assert not a.overlaps(b)
    legend = figure.legends[0].get_window_extent()
    assert all(not legend.overlaps(box) for box in boxes)
    assert not legend.overlaps(figure._suptitle.get_window_extent())


def test_a_long_legend_takes_more_rows_and_stays_clear_of_the_panels(tmp_path):
    names = [f"sweep-128x10-lr{i}-distill-from-bt4-with-a-long-name" for i in range(7)] + ["x"]
    runs = [read_metrics(write_run(tmp_path / name, [train_line(s) for s in range(10, 101, 10)])) for name in names]
    figure = build_figure(runs)
    figure.canvas.draw()
    legend = figure.legends[0].get_window_extent()
    assert legend.x0 >= 0 and legend.x1 <= figure.bbox.width and legend.y1 <= figure.bbox.height
    assert all(not legend.overlaps(ax.get_tightbbox()) for ax in figure.axes)
    assert tuple(round(v) for v in figure.bbox.size) == figure_size(7, names) == (1380, 3 * 300 + 45 + 3 * 25)  # 3 rows of 3


def test_core_panels_are_kept_without_data_and_optional_ones_appear_with_it(tmp_path):
    run = write_run(tmp_path / "no-eval", [train_line(s, bad_chunks=s // 500) for s in range(10, 1001, 10)])
    figure = build_figure([read_metrics(run)])
    panels = lines_by_panel(figure)
    for title in HELD_OUT:  # kept in place, saying "no data recorded"
        assert panels[title] == []
        ax = next(ax for ax in figure.axes if ax.get_title() == title)
        assert [t.get_text() for t in ax.texts] == ["no data recorded"]
    assert panels["bad chunks skipped"] == ["no-eval"]  # non-zero at last
    assert "teacher weight (alpha)" not in panels
    assert "moves_left" not in [p.key for p in shown_panels([read_metrics(run)])]


def test_null_nan_inf_and_non_numbers_are_skipped(tmp_path, capsys):
    run = write_run(tmp_path / "odd", [
        '{"kind": "train", "step": 10, "total": NaN, "policy": 1.0, "value": Infinity, "lr": null}',
        '{"kind": "train", "step": 20, "total": 2.0, "policy": -Infinity, "value": "0.5", "lr": true}',
        '{"kind": "train", "step": 30, "total": 1.5, "policy": 0.8, "value": [1], "lr": 1e999}',
        held_out_line(30) | {"policy_loss": None, "top1_accuracy": float("nan")},
        '{"kind": "test", "step": 40, "policy_loss": 1.2, "top1_accuracy": 0.4, "value_mse": Infinity}',
    ])
    metrics = read_metrics(run)
    assert metrics.series[("train", "total")] == ([20.0, 30.0], [2.0, 1.5])
    assert metrics.series[("train", "policy")] == ([10.0, 30.0], [1.0, 0.8])
    assert ("train", "value") not in metrics.series and ("train", "lr") not in metrics.series
    assert metrics.series[("test", "policy_loss")] == ([40.0], [1.2])
    assert metrics.series[("test", "value_mse")] == ([30.0], [0.3 - 0.01 * 0.03])
    assert metrics.bad_lines == 0
    out = plot_runs([run], tmp_path / "odd.png")
    assert png_size(out.read_bytes())[0] > 0
    assert capsys.readouterr().err == ""  # odd values are not malformed lines


def test_unknown_keys_and_kinds_are_ignored(tmp_path):
    run = write_run(tmp_path / "future", [
        train_line(10) | {"gradient_norm": 3.0, "note": "hello", "nested": {"a": 1}},
        {"kind": "swa", "step": 10, "total": 99.0},
        {"kind": "ddp", "step": 20, "ranks": 2, "weights_identical": False},
        train_line(20),
    ])
    figure = build_figure([read_metrics(run)])
    loss = next(ax for ax in figure.axes if ax.get_title() == TRAIN[0])
    (line,) = loss.get_lines()
    assert list(line.get_xdata()) == [10, 20] and 99.0 not in list(line.get_ydata())
    assert {ax.get_title() for ax in figure.axes} == {p.title for p in shown_panels([read_metrics(run)])}


def test_a_resumed_run_keeps_the_records_of_the_run_that_continued(tmp_path):
    first = [train_line(s, total=1.0) for s in range(10, 101, 10)] + [held_out_line(50), held_out_line(100)]
    again = [train_line(s, total=2.0) for s in range(70, 151, 10)] + [held_out_line(100), held_out_line(150)]
    metrics = read_metrics(write_run(tmp_path / "resumed", first + again))
    steps, totals = metrics.series[("train", "total")]
    assert steps == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150]
    assert totals == [1.0] * 6 + [2.0] * 9
    assert metrics.series[("test", "policy_loss")][0] == [50, 100, 150]


def test_malformed_lines_are_skipped_counted_and_warned_about(three_runs, capsys):
    path = three_runs[1] / "metrics.jsonl"
    lines = path.read_text().splitlines()
    lines.insert(3, '{"kind": "train", "step": 40, "tot')  # cut short
    lines.insert(7, "not json at all")
    lines.insert(9, "[1, 2, 3]")  # JSON, not an object
    lines.insert(11, '{"step": 10, "total": 1.0}')  # no kind
    lines.insert(12, '{"kind": "train", "step": "ten"}')  # no step
    lines.insert(13, "")  # blank lines are not malformed
    path.write_bytes(("\n".join(lines) + "\n").encode() + b'\xff\xfe{"kind": "train"}\n')  # and not UTF-8
    out = plot_runs(three_runs, three_runs[0].parent / "out.png")
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"lc0distill: warning: {path}: skipped 6 malformed line(s), the first is line 4"]
    assert out.exists()
    messages = []
    metrics = read_metrics(three_runs[1], warn=messages.append)
    assert metrics.bad_lines == 6 and metrics.first_bad_line == 4 and len(messages) == 1
    assert len(metrics.series[("train", "total")][0]) == 200


def test_labels_are_folder_names_made_unique(tmp_path):
    a = write_run(tmp_path / "a" / "run1", [train_line(10)])
    b = write_run(tmp_path / "b" / "run1", [train_line(10)])
    c = write_run(tmp_path / "run2", [train_line(10)])
    assert run_labels([a / "metrics.jsonl", b / "metrics.jsonl", c / "metrics.jsonl"]) == ["a/run1", "b/run1", "run2"]
    assert run_labels([c / "metrics.jsonl", c / "metrics.jsonl"]) == ["run2", "run2 (2)"]
    plot_runs([a, b, a / "metrics.jsonl"], tmp_path / "same.png")  # a metrics file may be named directly


def test_names_and_titles_are_plain_text(tmp_path):
    runs = [write_run(tmp_path / name, [train_line(10)]) for name in ("_underscore", "cost $5 and $6")]
    figure = build_figure([read_metrics(run) for run in runs], title=r"a $x^$ title, $\foo$")  # not TeX math
    assert [t.get_text() for t in figure.legends[0].get_texts()] == ["_underscore", "cost $5 and $6"]
    plot_runs(runs, tmp_path / "plain.png", title=r"a $x^$ title, $\foo$")


def test_plot_is_fast_for_a_few_thousand_lines(tmp_path):
    runs = [write_run(tmp_path / f"run{i}", [line for s in range(1, 3001)
                                             for line in [train_line(s, distill=i == 1)]
                                             + ([held_out_line(s, i == 1)] if s % 100 == 0 else [])])
            for i in range(3)]
    plot_runs(runs[:1], tmp_path / "warm.png")  # matplotlib's import and font cache: once a process
    started = time.perf_counter()
    plot_runs(runs, tmp_path / "runs.png")
    elapsed = time.perf_counter() - started
    # about 0.5 s here on a busy 2-core machine; the bound leaves room for a loaded machine
    assert elapsed < 2.0, f"plot_runs took {elapsed:.2f} s for 3 x 3030 lines"


def test_importing_the_plot_module_does_not_import_matplotlib():
    # (lc0distill.cli.plot_commands imports report.plot inside run(); importing lc0distill.cli takes torch's time)
    code = "import sys, lc0distill.report.plot; assert 'matplotlib' not in sys.modules, 'matplotlib imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------------------------- bad input

def test_a_missing_folder_is_an_error(tmp_path):
    with pytest.raises(Lc0DistillError, match=r"nowhere: no such run folder"):
        plot_runs([tmp_path / "nowhere"], tmp_path / "out.png")


def test_a_folder_without_metrics_is_an_error(tmp_path):
    (tmp_path / "empty-run").mkdir()
    with pytest.raises(Lc0DistillError, match=r"empty-run: no metrics.jsonl in this folder"):
        plot_runs([tmp_path / "empty-run"], tmp_path / "out.png")


@pytest.mark.parametrize("content", [b"", b"\n  \n"])
def test_an_empty_file_is_an_error(tmp_path, content):
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "metrics.jsonl").write_bytes(content)
    with pytest.raises(Lc0DistillError, match=r"new/metrics.jsonl: empty"):
        plot_runs([tmp_path / "new"], tmp_path / "out.png")


def test_an_unreadable_file_is_an_error(tmp_path, monkeypatch):
    run = write_run(tmp_path / "locked", [train_line(10)])

    def refuse(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)  # chmod 000 does not stop root
    with pytest.raises(Lc0DistillError, match=r"locked/metrics.jsonl: cannot read \(Permission denied\)"):
        plot_runs([run], tmp_path / "out.png")


def test_a_file_without_a_usable_line_is_an_error(tmp_path, capsys):
    run = write_run(tmp_path / "garbage", ["hello", '{"kind": "train"}', "[]"])
    with pytest.raises(Lc0DistillError, match=r"garbage/metrics.jsonl: no usable line \(3 malformed, the first is "
                                              r"line 1"):
        plot_runs([run], tmp_path / "out.png")
    assert capsys.readouterr().err == ""  # the error says it all
    assert not (tmp_path / "out.png").exists()


def test_bad_output_names_are_errors(three_runs, tmp_path):
    with pytest.raises(Lc0DistillError, match=r"out.jpg: the plot is a PNG image"):
        plot_runs(three_runs, tmp_path / "out.jpg")
    with pytest.raises(Lc0DistillError, match=r"no run folder given"):
        plot_runs([], tmp_path / "out.png")
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(Lc0DistillError, match=r"folder.png: is a folder"):
        plot_runs(three_runs, tmp_path / "folder.png")


def test_an_existing_plot_is_replaced(three_runs, tmp_path):
    out = tmp_path / "out.png"
    out.write_bytes(b"old")
    plot_runs(three_runs[:1], out)
    assert out.read_bytes()[:8] == PNG_SIGNATURE


# --------------------------------------------------------------------------------------------- the command

def test_cli_plot(three_runs, tmp_path, capsys):
    out = tmp_path / "cli.png"
    assert main(["plot", *map(str, three_runs), "--out", str(out), "--title", "from the command line"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    assert png_size(out.read_bytes()) == figure_size(13, ["baseline", "distilled", "short"], title=True)


def test_cli_errors_are_one_line(three_runs, tmp_path, capsys):
    (tmp_path / "not-a-run").mkdir()
    assert main(["plot", str(three_runs[0]), str(tmp_path / "not-a-run"), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lc0distill: error: ") and "not-a-run" in err
    assert not (tmp_path / "x.png").exists()
    with pytest.raises(SystemExit):
        main(["plot", str(three_runs[0])])  # --out is required: argparse's usage error
