"""The report builder: a lab gives its sections, the builder writes the parts every report shares.

Every ``report.md`` reads the same way: a title and one paragraph on what ran, the lab's results table and
baselines, the lab's own sections (figures, tables), then the common parts the builder adds from the run folder:
the ``deepnotes eval`` history (``eval/*.json``), the learning curves and per-epoch table (``metrics.csv``), and
the configuration (``config.json``).

Example::

    report = Report(run, f"image-classification: {cfg.model} on {cfg.dataset}", intro="Lecture 3 (CNN) ...")
    report.results([["test accuracy", "98.00%"]])
    report.figure("Confusion matrix (test)", "confusion_matrix.png")
    path = report.write()
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from deepnotes.experiment.run import Run
from deepnotes.io import write_text_atomic
from deepnotes.report import markdown_image, markdown_table, plot_learning_curves, read_metrics_csv


class Report:
    """Sections of one run's ``report.md``, written by :meth:`write`.

    Args:
        run: the run folder.
        title: the report's first heading.
        intro: a paragraph under it (lecture, data, what was trained); default "".
    """

    def __init__(self, run: Run | Path | str, title: str, intro: str = ""):
        self.run = run if isinstance(run, Run) else Run(run)
        self.title = title
        self.intro = intro
        self._head: list[str] = []
        self._body: list[str] = []

    def results(self, rows: Sequence[Sequence[Any]], headers: Sequence[str] = ("metric", "value"),
                note: str = "") -> "Report":
        """The "Results" table (first after the intro); ``note`` is a paragraph under it."""
        self._head += ["## Results", "", markdown_table(list(headers), [list(r) for r in rows]), ""]
        if note:
            self._head += [note, ""]
        return self

    def baselines(self, rows: Sequence[Sequence[Any]], headers: Sequence[str] = ("baseline", "value"),
                  note: str = "Published or measured baselines:") -> "Report":
        """A baselines table under the results (nothing when ``rows`` is empty)."""
        if rows:
            self._head += [note, "", markdown_table(list(headers), [list(r) for r in rows]), ""]
        return self

    def section(self, title: str, *blocks: str) -> "Report":
        """A ``##`` section of Markdown blocks (paragraphs, tables from :func:`markdown_table`, images)."""
        self._body += [f"## {title}", ""]
        for block in blocks:
            self._body += [block, ""]
        return self

    def table(self, title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]], note: str = "") -> "Report":
        """A section holding one table (and an optional paragraph before it)."""
        return self.section(title, *([note] if note else []), markdown_table(list(headers), [list(r) for r in rows]))

    def figure(self, title: str, png: str, alt: str | None = None, note: str = "") -> "Report":
        """A section holding one PNG of the run folder (``png`` relative to it)."""
        return self.section(title, *([note] if note else []), markdown_image(alt or title.lower(), png))

    def write(self, curves_title: str | None = None, eval_row: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
              name: str = "report.md") -> Path:
        """Write ``report.md`` (atomically) with the common parts; return its path.

        Args:
            curves_title: title of the learning-curves figure (drawn when metrics.csv exists); default the title.
            eval_row: turns one ``eval/*.json`` dict into a table row (column -> value); default its scalar values.
            name: file name in the run folder (default ``report.md``).
        """
        run = self.run
        lines = [f"# {self.title}", ""] + ([self.intro, ""] if self.intro else []) + self._head
        evals = run.eval_results()
        if evals:
            rows = [(eval_row or _scalars)(e) for e in evals]
            headers = list(dict.fromkeys(k for r in rows for k in r))
            lines += ["## `deepnotes eval` results", "",
                      markdown_table(headers, [[r.get(h, "") for h in headers] for r in rows]), ""]
        lines += self._body
        metrics_csv = run / "metrics.csv"
        if metrics_csv.is_file():
            rows = read_metrics_csv(metrics_csv)
            if rows:
                plot_learning_curves(rows, run / "learning_curves.png", title=curves_title or self.title)
                lines += ["## Learning curves", "", markdown_image("learning curves", "learning_curves.png"), "",
                          "## Per-epoch metrics", "",
                          markdown_table(list(rows[0].keys()), [list(r.values()) for r in rows]), ""]
        config = run.read_json("config.json").get("config", {})
        lines += ["## Configuration", "", markdown_table(["field", "value"], [[k, v] for k, v in config.items()]), ""]
        path = run / name
        write_text_atomic(path, "\n".join(lines))
        return path


def _scalars(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if not isinstance(v, (list, dict))}
