"""The ladder's table (Markdown and JSON: size, parameters, training positions/s, held-out policy loss and
top-1, lc0 nps, Elo against the teacher at each limit with its 95% interval) and its PNG of Elo against size."""

from __future__ import annotations

import io

from lc0distill.fileio import write_atomic, write_json


UNBOUNDED = 800  # where the PNG marks a pairing with every game lost (or won)


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.0f}"


def elo_cell(row: dict | None) -> str:
    """+123 [+80, +170] (+120 =30 -50); an interval that is unbounded (all wins) shows as such."""
    if not row or not row.get("games"):
        return "not played"
    record = f"(+{row['wins']} ={row['draws']} -{row['losses']})"
    if row.get("elo") is None:
        return f"n/a {record}"
    stopped = ", SPRT" if (row.get("stopped") or "").startswith("SPRT") else ""
    return f"{_signed(row['elo'])} [{_signed(row.get('elo_low'))}, {_signed(row.get('elo_high'))}] {record}{stopped}"


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def markdown(result: dict) -> str:
    limits = result["limits"]
    selfplay = f"self-play pos/s ({result['selfplay_visits']} visits)" if result.get("selfplay_visits") else \
        "self-play pos/s"
    head = ["net", "parameters", "train pos/s", selfplay, "held-out policy loss", "top-1", "lc0 nps",
            *[f"Elo vs teacher, {limit}" for limit in limits]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    teacher = result["teacher"]
    lines.append("| " + " | ".join([f"teacher {teacher['size']}", f"{teacher['parameters']:,}", "-",
                                    _number(teacher.get("selfplay_positions_per_second"), 0),
                                    _number(teacher["held_out"].get("policy_loss"), 4),
                                    _number(teacher["held_out"].get("top1_accuracy"), 3),
                                    _number(teacher.get("nps"), 0), *["0" for _ in limits]]) + " |")
    for rung in result["rungs"]:
        held = rung.get("held_out") or {}
        cells = [rung["size"], f"{rung['parameters']:,}" if rung.get("parameters") else "-",
                 _number(rung.get("train_positions_per_second"), 0),
                 _number(rung.get("selfplay_positions_per_second"), 0), _number(held.get("policy_loss"), 4),
                 _number(held.get("top1_accuracy"), 3), _number(rung.get("nps"), 0),
                 *[elo_cell(rung["vs_teacher"].get(limit)) for limit in limits]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def png(result: dict) -> bytes:
    """Elo against the teacher (95% interval) by parameter count, one line per limit; the teacher at 0."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    for index, limit in enumerate(result["limits"]):
        color, labelled = f"C{index}", False
        played = [(r["parameters"], r["vs_teacher"][limit]) for r in result["rungs"]
                  if r.get("parameters") and r["vs_teacher"].get(limit, {}).get("games")]
        points = [(x, row) for x, row in played if row.get("elo") is not None]
        if points:
            low = [row["elo"] - row["elo_low"] if row.get("elo_low") is not None else 0 for _, row in points]
            high = [row["elo_high"] - row["elo"] if row.get("elo_high") is not None else 0 for _, row in points]
            axes.errorbar([x for x, _ in points], [row["elo"] for _, row in points], yerr=[low, high], marker="o",
                          capsize=3, color=color, label=limit)
            labelled = True
        for x, row in played:  # every game lost (or won): no finite Elo, a marker at the plot's edge
            if row.get("elo") is None:
                lost = row["wins"] + row["draws"] == 0
                axes.plot([x], [-UNBOUNDED if lost else UNBOUNDED], marker="v" if lost else "^", linestyle="",
                          color=color, label=None if labelled else f"{limit} (every game {'lost' if lost else 'won'})")
                labelled = True
    teacher = result["teacher"]
    axes.axhline(0, color="grey", linewidth=0.8)
    axes.axvline(teacher["parameters"], color="grey", linestyle=":", linewidth=0.8)
    axes.text(teacher["parameters"], axes.get_ylim()[0], f" teacher {teacher['size']}", color="grey", fontsize=8,
              va="bottom")
    axes.set_xscale("log")
    axes.set_xlabel("student parameters")
    axes.set_ylabel("Elo vs the teacher (95% interval)")
    axes.set_title(f"students of {teacher['size']} in lc0, against it")
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=8)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def write_tables(result: dict, out) -> None:
    write_json(out / "ladder.json", result)
    write_atomic(out / "ladder.md", (markdown(result) + "\n").encode())
    write_atomic(out / "ladder.png", png(result))
