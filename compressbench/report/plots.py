"""Trade-off plots: a task's main metric against latency and against size on disk.

One figure per task and axis, each saved as ``plots/<task>-<axis>.png`` and ``.svg`` in the run
directory (the markdown links the PNG) and kept as SVG text for the HTML page, which inlines it
so the page needs no other file and no network. The teacher is a star with its score as a dashed
line and the "within N points" margin as a dotted one; the Pareto front (no other model both
faster or smaller and better) is the stepped line. Every point carries the SVG id
``point:<label>`` so tests and scripts can find it.
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

from compressbench import rundir, safefs
from compressbench.measure.backend import REFERENCE, markers
from compressbench.report.summary import TEACHER, Row, RunSummary, TaskTable

AXES = {  # axis -> (row attribute, x label, Pareto flag)
    "latency": ("p50_ms", "latency p50, batch 1 (ms, log scale)", "pareto_latency"),
    "size": ("size_mb", "size on disk (MB, log scale)", "pareto_size"),
}
PLOTS = rundir.PLOTS


@dataclass
class Plot:
    task: str
    axis: str  # "latency" or "size"
    title: str
    svg: str  # inline SVG (no XML prolog), ids prefixed so several can share a page
    files: list[str]  # paths relative to the run directory: PNG, SVG
    labels: list[str]  # every point drawn
    front: list[str]  # the Pareto front, cheapest first


def make_plots(summary: RunSummary, out_dir: Path) -> list[Plot]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    out = []
    for table in summary.tables:
        for axis in AXES:
            plot = task_plot(table, axis, summary.within, Path(out_dir))
            if plot is not None:
                out.append(plot)
    return out


def task_plot(table: TaskTable, axis: str, within: float, out_dir: Path) -> Plot | None:
    import matplotlib.pyplot as plt

    attr, xlabel, flag = AXES[axis]
    if axis == "latency" and any(r.home and r.home != REFERENCE for r in table.rows):
        xlabel += "; filled: PyTorch eager, or the runtime a model was made for"
    rows = [r for r in table.rows if getattr(r, attr)]
    if not rows:
        return None
    title = f"{table.task}: {table.main_metric} vs {axis}"
    front = sorted((r for r in rows if getattr(r, flag)), key=lambda r: getattr(r, attr))
    band = decision_band(table, rows, within)
    with plt.rc_context({"svg.hashsalt": f"{table.task}-{axis}", "svg.fonttype": "none",
                         "font.size": 9}):
        if band is None:
            fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=110)
            axes = [ax]
        else:  # weak models stretch the axis: a second panel shows the band the picks are in
            fig, axes = plt.subplots(2, 1, figsize=(6.8, 8.4), dpi=110,
                                     gridspec_kw={"height_ratios": [1.25, 1]})
            ax = axes[0]
        try:
            draw(ax, table, rows, front, attr, within)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(plain_text(table.main_metric))
            ax.set_title(plain_text(title))
            if band is not None:
                low, high, points = band
                near = [r for r in rows if low <= r.mean_score]
                draw(axes[1], table, near, [r for r in front if r in near], attr, within,
                     ids=False, legend=False)
                axes[1].set_ylim(low, high)
                axes[1].set_xlabel(xlabel.split(";")[0])
                axes[1].set_title(f"within {points:g} points of the teacher "
                                  f"({len(rows) - len(near)} weaker not shown)")
            fig.tight_layout()
            stem = f"{table.task}-{axis}"
            png = rundir.plot_file(out_dir, table.task, axis, "png")
            png_buf = io.BytesIO()
            # "tight": the legend below the axes grows with the backends; never clipped
            fig.savefig(png_buf, format="png", metadata={"Software": None},
                        bbox_inches="tight", pad_inches=0.1)
            buf = io.StringIO()
            fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None},
                        bbox_inches="tight", pad_inches=0.1)
        finally:
            plt.close(fig)
    svg = buf.getvalue()
    safefs.write_atomic(png, png_buf.getvalue())
    safefs.write_atomic(rundir.plot_file(out_dir, table.task, axis, "svg"), svg)
    return Plot(table.task, axis, title, inline(svg, id_prefix(stem)),
                [f"{PLOTS}/{stem}.png", f"{PLOTS}/{stem}.svg"], [r.label for r in rows],
                [r.label for r in front])


#: the band of the zoomed panel, in points below the teacher (at least 5 x ``within``)
BAND_POINTS = 5.0


def decision_band(table: TaskTable, rows: list[Row], within: float
                  ) -> tuple[float, float, float] | None:
    """(low, high, points) of a second panel showing the models within a few points of the
    teacher, when weaker ones stretch the axis so that the band is under a fifth of it; None
    when one panel reads well."""
    teacher = table.teacher
    if teacher is None or len(rows) < 3:
        return None
    points = max(BAND_POINTS, 5 * within)
    low = teacher.mean_score - points / 100
    scores = [r.mean_score for r in rows]
    near = [s for s in scores if s >= low]
    if len(near) < 2 or min(scores) >= low:
        return None  # no model below the band, or one in it: the one panel shows it
    span = max(scores) - min(scores)
    if max(max(near), teacher.mean_score) - low > span / 5:
        return None  # the band is a fair part of the axis already
    margin = (max(near) - low) * 0.08 + 1e-6
    return low - margin, max(max(near), teacher.mean_score) + margin, points


def draw(ax, table: TaskTable, rows: list[Row], front: list[Row], attr: str,
         within: float, ids: bool = True, legend: bool = True) -> None:
    teacher = table.teacher
    if teacher is not None:
        ax.axhline(teacher.mean_score, color="#444", lw=0.8, ls="--", zorder=1)
        ax.axhline(teacher.mean_score - within / 100, color="#888", lw=0.8, ls=":", zorder=1)
    on_front = {r.label for r in front}
    if len(front) > 1:
        (line,) = ax.step([getattr(r, attr) for r in front], [r.mean_score for r in front],
                          where="post", color="#d62728", lw=1.2, alpha=0.7, zorder=2,
                          label="Pareto front")
        line.set_gid("pareto")
    for row in rows:
        x, y = getattr(row, attr), row.mean_score
        is_teacher = row.label == TEACHER
        if row.ci is not None:  # the 95% bootstrap interval over the split's examples
            yerr = [[max(0.0, y - row.ci[0])], [max(0.0, row.ci[1] - y)]]
            ax.errorbar(x, y, yerr=yerr, color="#999", lw=0.8, capsize=2, zorder=2)
        elif row.score_std:
            ax.errorbar(x, y, yerr=row.score_std, color="#999", lw=0.8, capsize=2, zorder=2)
        crossed = row.flagged and not is_teacher  # an unfilled marker: no edge colour
        points = ax.scatter([x], [y], s=120 if is_teacher else 36,
                            marker="*" if is_teacher else "x" if crossed else "o",
                            color="#111" if is_teacher else "#999" if crossed else
                            ("#d62728" if row.label in on_front else "#1f77b4"), zorder=3,
                            **({"linewidths": 1.2} if crossed else
                               {"edgecolors": "white", "linewidths": 0.5}))
        if ids:
            points.set_gid(f"point:{row.label}")
    others = other_backends(rows) if attr == "p50_ms" else []
    marks = markers(sorted({r.home for r in rows if r.home} | {b.backend for _, b in others},
                           key=lambda n: (n != REFERENCE, n)))
    for row, b in others:  # the same model on its other backends: hollow, one marker each
        points = ax.scatter([b.p50_ms], [row.mean_score], s=30,
                            marker=marks[b.backend], facecolors="none",
                            edgecolors="#2ca02c", linewidths=1.0, zorder=3)
        if ids:
            points.set_gid(f"point:{row.label}@{b.backend}")
        ax.plot([getattr(row, attr), b.p50_ms], [row.mean_score] * 2, color="#2ca02c",
                lw=0.5, alpha=0.5, zorder=1)
    ax.set_xscale("log")
    place_labels(ax, [(getattr(r, attr), r.mean_score, r.label) for r in rows])
    ax.grid(True, which="both", color="#eee", lw=0.6)
    ax.xaxis.set_major_formatter(_plain(ax))
    ax.xaxis.set_minor_formatter(_plain(ax, minor=True))
    if not legend:
        return
    handles = [ax.scatter([], [], marker="*", s=80, color="#111", label="teacher (dashed: "
                          f"its score; dotted: −{within:g} point)"),
               ax.scatter([], [], s=30, color="#d62728", label="on the Pareto front"),
               ax.scatter([], [], s=30, color="#1f77b4", label="dominated")]
    if any(r.ci is not None for r in rows):
        handles.append(ax.errorbar([], [], yerr=[], color="#999", lw=0.8,
                                   label="95% bootstrap interval"))
    if any(r.flagged for r in rows):
        handles.append(ax.scatter([], [], s=30, marker="x", color="#999", label="flagged"))
    homes = sorted({r.home for r in rows if r.home} | {b.backend for _, b in others})
    if others or homes not in ([], [REFERENCE]):
        handles += [ax.scatter([], [], s=30, marker=marks[name], facecolors="none",
                               edgecolors="#2ca02c", label=f"on {name}") for name in homes
                    if any(b.backend == name for _, b in others)]
    ax.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16),
              ncol=3 if len(handles) <= 3 else 4, frameon=False)


def other_backends(rows: list[Row]) -> list:
    """(row, backend result) for every backend a row was measured on besides its home."""
    return [(r, b) for r in rows for b in r.backends.values()
            if b.ok and b.backend != r.home and b.p50_ms]


def place_labels(ax, points: list[tuple[float, float, str]]) -> None:
    """Label each point where its measured box overlaps no label or point placed so far:
    right of the point, then left, moving up and down in steps of a line; in a cluster with
    no free place, where it overlaps the fewest (with a leader line when it moved)."""
    ax.autoscale_view()
    renderer = ax.figure.canvas.get_renderer()
    to_px = ax.transData.transform
    marks = [(px - 6, py - 6, 12, 12) for px, py in (to_px((x, y)) for x, y, _ in points)]
    placed: list[tuple[float, float, float, float]] = []
    shifts = [0, 1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 6, -6, 7, 8, 9, 10, 11, 12]
    for x, y, label in sorted(points, key=lambda p: (p[1], p[0])):
        px, py = to_px((x, y))
        own = (px - 6, py - 6, 12, 12)
        others = placed + [m for m in marks if m != own]
        best = None
        for shift in shifts:
            for side in (1, -1):
                ann = ax.annotate(plain_text(label), (x, y), xytext=(5 * side, 3 + shift * 9),
                                  textcoords="offset points", fontsize=7, color="#333",
                                  ha="left" if side > 0 else "right",
                                  arrowprops={"arrowstyle": "-", "color": "#bbb", "lw": 0.5}
                                  if shift else None)
                ext = ann.get_window_extent(renderer)
                box = (ext.x0, ext.y0, ext.width, ext.height)
                hits = sum(overlap(box, other) for other in others)
                if best is None or hits < best[0]:
                    if best is not None:
                        best[1].remove()
                    best = (hits, ann, box)
                else:
                    ann.remove()
                if hits == 0:
                    break
            if best[0] == 0:
                break
        placed.append(best[2])


def overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def _plain(ax, minor: bool = False):
    """Tick labels as plain numbers; minor ticks labelled as densely as the span allows."""
    import math

    from matplotlib.ticker import FuncFormatter

    def label(x, _pos):
        if minor:
            lo, hi = ax.get_xlim()
            span = math.log10(hi / lo) if lo > 0 else 3
            keep = "23456789" if span < 0.8 else "2345" if span < 1.3 else "25" if span < 2 \
                else ""
            if f"{x:g}"[0] not in keep:
                return ""
        return f"{x:g}"
    return FuncFormatter(label)


def plain_text(text: str) -> str:
    """Text that matplotlib draws as it is: a '$' would start mathtext (and a bad formula
    raises), so each is escaped."""
    return str(text).replace("$", r"\$")


def id_prefix(stem: str) -> str:
    """An id prefix safe inside an attribute (names from old or foreign runs may hold quotes),
    unique per figure."""
    import hashlib
    safe = re.sub(r"[^A-Za-z0-9_-]", "-", stem)
    return f"{safe}-{hashlib.sha256(stem.encode()).hexdigest()[:6]}-"


def inline(svg: str, prefix: str) -> str:
    """SVG text fit to sit in an HTML page: no XML prolog or DOCTYPE, every id and reference
    to one prefixed so two figures never share an id."""
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r'(\bid="|href="#|url\(#)', lambda m: m.group(1) + prefix, svg)
    return svg
