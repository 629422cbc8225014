"""The markdown report: GitHub-flavoured tables, plots linked as PNG files beside it."""
from __future__ import annotations

from urllib.parse import quote

from compressbench.report import tables as T
from compressbench.report.summary import RunSummary

# text shown as it is: characters that would start HTML, a link, code, emphasis or a table
# cell are backslash-escaped (``<img onerror=...>``, ``[x](javascript:...)``, ``a|b``)
md_text = T.esc


def md_code(text: object) -> str:
    """A code span (nothing inside is markup), unless the text itself holds a backtick."""
    text = str(text).replace("\r", " ").replace("\n", " ")
    return f"`{text}`" if "`" not in text else md_text(text)


def md_table(table: T.Table) -> list[str]:
    def cell(c: T.Cell) -> str:
        return md_text(c.text)
    align = ["---:" if table.numeric(i) else "---" for i in range(len(table.head))]
    head = "| " + " | ".join(md_text(h) for h in table.head) + " |"
    return ([head, "|" + "|".join(align) + "|"] +
            ["| " + " | ".join(cell(c) for c in row) + " |" for row in table.rows])


def md_link(path: str) -> str:
    """A relative link target: percent-encoded, so it can only name a file beside the report
    (no ``javascript:`` scheme, no ')' closing the link early)."""
    return quote(path, safe="/-_.~")


class MarkdownReporter:
    name = "md"
    filename = "report.md"
    uses_plots = True
    description = "report.md: tables, plots (PNG links), what to pick, error analysis"

    def render(self, summary: RunSummary) -> str:
        out = [f"# compressbench report: {md_text(summary.suite)}", ""]
        if summary.picks:
            out += ["## What to pick", "", *md_table(T.picks_table(summary)), "",
                    T.picks_note(summary), ""]
        overview = T.overview_table(summary)
        if overview is not None:
            out += ["## Across tasks", "", *md_table(overview), "", T.overview_note(summary),
                    ""]
        errors = {e.task: e for e in summary.errors}
        for table in summary.tables:
            out += self.task_section(summary, table, errors.get(table.task))
        out += ["## Environment", ""] + [f"- {line}" for line in T.env_lines(summary)]
        return "\n".join(out) + "\n"

    def task_section(self, summary: RunSummary, table, errors) -> list[str]:
        out = [f"## {md_text(table.task)}", "",
               (f"Main metric: {md_code(table.main_metric)}; retained %, compression and speed-up "
               f"are relative to the fine-tuned teacher; metrics are mean ± std over seeds."), "",
               *md_table(T.task_table(table))]
        out += [f"\n{note}" for note in T.table_notes(table)]
        for job_id, error in table.failed:
            out.append(f"\n**failed** {md_code(job_id)}: {md_text(error)}")
        out.append("")
        per_backend = T.backend_table(table)
        if per_backend is not None:
            out += [f"### {md_text(table.task)}: per backend", "", *md_table(per_backend), "",
                    T.BACKEND_NOTE, ""]
            skipped = T.not_measured(table)
            if skipped:
                out += ["Not measured:", ""] + [f"- {line}" for line in skipped] + [""]
        for plot in (p for p in summary.plots if p.task == table.task):
            out += [f"![{md_text(plot.title)}]({md_link(plot.files[0])})", "",
                    (f"Pareto front ({plot.axis}): {', '.join(md_text(f) for f in plot.front)}. "
                    f"SVG: {md_code(plot.files[1])}."), ""]
        if summary.show_grid:
            for title, grid in T.grid_tables(table):
                out += [f"### {md_text(title)}", "", *md_table(grid), ""]
        if errors is not None:
            out += [f"### {md_text(table.task)}: error analysis", "",
                    T.errors_intro(errors, summary), ""]
            if errors.methods:
                out += [*md_table(T.per_class_table(errors)), ""]
            confusion = T.confusion_overview(errors)
            if confusion is not None:
                out += ["Confusion matrices (gold → predicted):", "", *md_table(confusion), ""]
            for m in errors.methods:
                matrix = T.confusion_table(errors, m)
                if matrix is not None:
                    out += [f"Confusion matrix, {md_text(m.label)}:", "", *md_table(matrix), ""]
            examples = T.examples_table(errors)
            if examples is not None:
                out += ["Examples the teacher gets right and the method gets wrong:", "",
                        *md_table(examples), ""]
        return out
