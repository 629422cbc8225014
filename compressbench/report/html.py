"""The HTML report: one self-contained page (inline CSS, inline SVG plots, a few lines of inline
JavaScript to sort tables), no external file and no network request, so it works offline and
can be mailed or attached as it is."""
from __future__ import annotations

import html
import json
import re

from compressbench.report import tables as T
from compressbench.report.summary import RunSummary

e = html.escape


def html_table(table: T.Table, cls: str = "sortable") -> str:
    head = "".join(f"<th scope=col>{e(h)}</th>" for h in table.head)
    body = []
    for row in table.rows:
        cells = []
        for i, c in enumerate(row):
            attrs = ""
            if c.numeric:
                attrs += " class=num"
            if isinstance(c.value, int | float):
                attrs += f" data-v='{c.value!r}'"
            elif c.numeric:
                attrs += " data-v=''"
            cells.append(f"<td{attrs}>{e(c.text)}</td>")
        body.append(f"<tr data-label='{e(row[0].text, quote=True)}'>{''.join(cells)}</tr>")
    return (f"<div class=scroll><table class='{cls}'><thead><tr>{head}</tr></thead><tbody>"
            + "\n".join(body) + "</tbody></table></div>")


def anchor(task: str) -> str:
    return "task-" + "".join(ch if ch.isalnum() else "-" for ch in task)


class HtmlReporter:
    name = "html"
    filename = "report.html"
    uses_plots = True
    description = "report.html: one self-contained page, sortable tables, inline SVG plots"

    def render(self, summary: RunSummary) -> str:
        title = f"compressbench report: {summary.suite}"
        nav = ["<a href='#pick'>What to pick</a>"] if summary.picks else []
        if summary.overview:
            nav.append("<a href='#overview'>Across tasks</a>")
        nav += [f"<a href='#{anchor(t.task)}'>{e(t.task)}</a>" for t in summary.tables]
        nav.append("<a href='#environment'>Environment</a>")
        first, last = summary.started
        parts = [(f"<!doctype html><html lang=en><head><meta charset='utf-8'>"
                 f"<meta name=viewport content='width=device-width, initial-scale=1'>"
                 f"<title>{e(title)}</title><style>{CSS}</style></head><body>"),
                 (f"<header><h1>{e(title)}</h1><p class=sub>{len(summary.tables)} task(s), "
                 f"runs started {e(first[:16])} … {e(last[:16])} · click a column heading to "
                 f"sort</p><nav>{' · '.join(nav)}</nav></header><main>")]
        if summary.picks:
            parts += ["<section id=pick><h2>What to pick</h2>", html_table(T.picks_table(summary)),
                      f"<p class=note>{md_inline(T.picks_note(summary))}</p></section>"]
        overview = T.overview_table(summary)
        if overview is not None:
            parts += ["<section id=overview><h2>Across tasks</h2>", html_table(overview),
                      f"<p class=note>{e(T.overview_note(summary))}</p></section>"]
        errors = {x.task: x for x in summary.errors}
        for table in summary.tables:
            parts.append(self.task_section(summary, table, errors.get(table.task)))
        parts.append("<section id=environment><h2>Environment</h2><ul>")
        parts += [f"<li>{md_inline(line)}</li>" for line in T.env_lines(summary)]
        suite_text = suite_yaml(summary.run_dir)
        if suite_text is not None:
            parts.append(f"</ul><details><summary>suite.yaml</summary><pre>"
                         f"{e(suite_text)}</pre></details>")
        else:
            parts.append("</ul>")
        parts.append(f"</section></main><script>{JS}</script></body></html>")
        return "\n".join(parts)

    def task_section(self, summary: RunSummary, table, errors) -> str:
        parts = [(f"<section id='{anchor(table.task)}' class=task><h2>{e(table.task)}</h2>"
                 f"<p>Main metric: <code>{e(table.main_metric)}</code>; retained %, compression "
                 f"and speed-up are relative to the fine-tuned teacher; metrics are mean ± std "
                 f"over seeds.</p>"), html_table(T.task_table(table))]
        parts += [f"<p class=note>{md_inline(note)}</p>" for note in T.table_notes(table)]
        for job_id, error in table.failed:
            parts.append(f"<p class=failed><b>failed</b> <code>{e(job_id)}</code>: "
                         f"{e(error)}</p>")
        per_backend = T.backend_table(table)
        if per_backend is not None:
            parts += [f"<h3>{e(table.task)}: per backend</h3>", html_table(per_backend),
                      f"<p class=note>{md_inline(T.BACKEND_NOTE)}</p>"]
            skipped = T.not_measured(table)
            if skipped:
                parts.append("<p class=note>Not measured:</p><ul class=note>" + "".join(
                    f"<li>{md_inline(line)}</li>" for line in skipped) + "</ul>")
        plots = [p for p in summary.plots if p.task == table.task]
        if plots:
            parts.append("<div class=plots>")
            for p in plots:
                parts.append(f"<figure class=plot data-task='{e(p.task, quote=True)}' "
                             f"data-axis='{p.axis}' data-points='{e(json.dumps(p.labels))}'>"
                             f"{p.svg}<figcaption>Pareto front ({p.axis}): "
                             f"{e(', '.join(p.front))}</figcaption></figure>")
            parts.append("</div>")
        if summary.show_grid:
            for title, grid in T.grid_tables(table):
                parts += [f"<h3>{e(title)}</h3>", html_table(grid)]
        if errors is not None:
            parts += [(f"<h3>Error analysis</h3><p>{md_inline(T.errors_intro(errors, summary))}"
                      f"</p>")]
            if errors.methods:
                parts.append(html_table(T.per_class_table(errors), "sortable per-class"))
            confusion = T.confusion_overview(errors)
            if confusion is not None:
                parts += ["<h4>Confusion matrices (gold → predicted)</h4>", html_table(confusion)]
            matrices = [(m, T.confusion_table(errors, m)) for m in errors.methods]
            if any(t is not None for _, t in matrices):
                parts.append("<h4>Confusion matrices (gold ↓, predicted →)</h4>")
            for m, matrix in matrices:
                if matrix is not None:
                    parts += [(f"<details class=errors data-label='{e(m.label, quote=True)}'>"
                              f"<summary>{e(m.label)}</summary>"), html_table(matrix, "confusion"),
                              "</details>"]
            examples = T.examples_table(errors)
            if examples is not None:
                parts += ["<h4>Examples the teacher gets right and the method gets wrong</h4>",
                          html_table(examples, "sortable examples")]
        parts.append("</section>")
        return "\n".join(parts)


def md_inline(text: str) -> str:
    """Escape, then render the two inline markdown forms the shared notes use."""
    out = e(text)
    out = re.sub(r"(?<!\\)`([^`]+)(?<!\\)`", r"<code>\1</code>", out)
    out = re.sub(r"(?<!\\)\*\*([^*]+)(?<!\\)\*\*", r"<b>\1</b>", out)
    return re.sub(r"\\(&lt;|&gt;|&amp;|&quot;|&#x27;|[\\`*_\[\]|~])", r"\1", out)  # esc()'d


CSS = """
:root{--line:#e3e3e3;--head:#f5f6f8;--accent:#1f5fae}
*{box-sizing:border-box}
body{font:14px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1b1b1b}
header{padding:1em 2em .5em;border-bottom:1px solid var(--line);background:#fafbfc}
header h1{margin:0 0 .2em;font-size:1.5em}.sub{margin:0;color:#555}
nav{margin:.4em 0 .2em}nav a{color:var(--accent);text-decoration:none}
main{max-width:1500px;margin:0 auto;padding:0 2em 3em}
h2{margin-top:2em;border-bottom:2px solid var(--line);padding-bottom:.2em}
.scroll{overflow-x:auto;max-width:100%;margin:.6em 0}
table{border-collapse:collapse;font-variant-numeric:tabular-nums;font-size:13px}
th,td{border-bottom:1px solid var(--line);padding:.28em .6em;text-align:left;white-space:nowrap}
th{background:var(--head);position:sticky;top:0;cursor:pointer;user-select:none}
th[aria-sort=ascending]::after{content:" ▲"}th[aria-sort=descending]::after{content:" ▼"}
td.num{text-align:right}
table.sortable td:first-child{position:sticky;left:0;background:#fff;font-weight:600}
tbody tr:hover td{background:#f3f7fc}
table.examples td{white-space:normal;max-width:40em}
.plots{display:flex;flex-wrap:wrap;gap:1em}
figure.plot{margin:0;flex:1 1 460px;max-width:700px}
figure.plot svg{width:100%;height:auto}
figcaption{font-size:12px;color:#555}
details.errors{margin:.3em 0}details.errors summary{cursor:pointer;color:var(--accent)}
.note{color:#555;font-size:13px;max-width:70em}.failed{color:#a00}
code{font-size:90%;background:#f3f3f3;padding:0 .2em;border-radius:3px;overflow-wrap:anywhere}
pre{background:#f7f7f7;padding:1em;overflow-x:auto;white-space:pre-wrap;overflow-wrap:anywhere}
p,li{overflow-wrap:anywhere}
figure.plot{overflow-x:auto;min-width:0}figure.plot svg{min-width:520px}
@media (max-width:700px){
  header{padding:.8em .8em .4em}main{padding:0 .8em 2em}
  figure.plot{flex-basis:100%}
  table{font-size:12px}th,td{padding:.25em .4em}
}
"""

JS = """
(function(){
  function key(row,i){
    var c=row.cells[i];if(!c)return null;
    var v=c.getAttribute('data-v');
    if(v===null)return c.textContent.trim().toLowerCase();
    return v===''?null:parseFloat(v);
  }
  function sortBy(table,th,i){
    var dir=th.getAttribute('aria-sort')==='ascending'?'descending':'ascending';
    table.querySelectorAll('th').forEach(function(h){h.removeAttribute('aria-sort');});
    th.setAttribute('aria-sort',dir);
    var body=table.tBodies[0],rows=Array.prototype.slice.call(body.rows);
    rows.sort(function(a,b){
      var x=key(a,i),y=key(b,i);
      if(x===null&&y===null)return 0;if(x===null)return 1;if(y===null)return -1;
      var c=(typeof x==='number'&&typeof y==='number')?x-y:String(x).localeCompare(String(y));
      return dir==='ascending'?c:-c;
    });
    rows.forEach(function(r){body.appendChild(r);});
  }
  document.querySelectorAll('table.sortable').forEach(function(table){
    table.querySelectorAll('th').forEach(function(th,i){
      th.tabIndex=0;th.title='sort by '+th.textContent;
      th.addEventListener('click',function(){sortBy(table,th,i);});
      th.addEventListener('keydown',function(ev){
        if(ev.key==='Enter'||ev.key===' '){ev.preventDefault();sortBy(table,th,i);}
      });
    });
  });
})();
"""


def suite_yaml(run_dir) -> str | None:
    """The run's ``suite.yaml`` to show in the page; None when missing, unreadable or a
    symbolic link (a planted link must not copy a file from outside into the report)."""
    from compressbench import safefs
    from compressbench.errors import CompressBenchError

    path = run_dir / "suite.yaml"
    if not path.is_file():
        return None
    try:
        return safefs.read_bytes(path).decode("utf-8", errors="replace")
    except (CompressBenchError, OSError):
        return None
