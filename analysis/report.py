"""``python -m analysis report``: runs in, report.md + report.html + PNGs + summary.json out.

Everything degrades per section: a run without an attention log still gets its tables, and the
report lists every plot it did not draw with the reason, so nothing disappears silently.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from analysis import tables
from analysis.attention import AttentionLog, AttentionLogError, read_attention_log
from analysis.defaults import DEFAULT_BASELINE, DEFAULT_EXAMPLES  # noqa: E402  (re-exported)
from analysis.heatmaps import choose_examples, document_figure
from analysis.plots import OUTCOMES, MassSet, layer_mass_figure
from analysis.reference import Reference
from analysis.render import Block, Bullets, Heading, Paragraph, Picture, TableBlock, to_html, to_markdown
from analysis.runs import Run, load_runs
from analysis.stats import DEFAULT_RESAMPLES, DEFAULT_SEED, compare, summarise


@dataclass
class ReportSettings:
    baseline: str = DEFAULT_BASELINE
    bootstrap: int = DEFAULT_RESAMPLES
    seed: int = DEFAULT_SEED
    examples: int = DEFAULT_EXAMPLES
    layer: int | None = None
    attention_overrides: dict[str, str] = field(default_factory=dict)  # run label / model / RUN arg -> folder or 'none'
    reference: Reference | None = None  # published accuracies to show beside ours


@dataclass
class AttentionSource:
    log: AttentionLog | None
    description: str  # the folder and record count, or why there is none


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "run"


def _candidate_folders(value: str, run: Run) -> list[Path]:
    path = Path(value).expanduser()
    if path.is_absolute():
        return [path]
    bases = [Path.cwd()]
    for results_file in run.results_files:
        bases += [results_file.parent, results_file.parent.parent, results_file.parent.parent.parent]
    return [base / path for base in bases]


def attention_source(run: Run, overrides: dict[str, str]) -> AttentionSource:
    """The run's attention log: an override (by label, model or RUN argument), else model_args' attention_log."""
    override = next((overrides[k] for k in (run.label, run.source, run.model) if k in overrides), None)
    if override is not None and override.lower() == "none":
        return AttentionSource(None, "switched off with --attention_log")
    value = override or run.args.get("attention_log")
    if not value or value.lower() == "none":
        return AttentionSource(None, "the run had no attention_log in its model_args")
    candidates = _candidate_folders(value, run)
    folder = next((c for c in candidates if c.is_dir()), candidates[0])
    try:
        log = read_attention_log(folder, model=run.model)
    except AttentionLogError as error:
        return AttentionSource(None, str(error))
    return AttentionSource(log, f"{folder} ({len(log.records)} records)")


def _baselines(runs: list[Run], task: str, name: str) -> list[Run]:
    having = [run for run in runs if task in run.tasks]
    return [run for run in having if run.label == name] or [run for run in having if run.model == name]


def _baseline_for(method: Run, candidates: list[Run]) -> Run | None:
    """The baseline on the same checkpoint if there is one, else the first baseline run."""
    same = [run for run in candidates if run.args.get("pretrained") == method.args.get("pretrained")]
    return (same or candidates or [None])[0]


def _mass_sets(run: Run, log: AttentionLog, task: str) -> dict[str, MassSet | None]:
    groups: dict[str, list] = {outcome: [] for outcome in OUTCOMES}
    for doc_id, document in sorted(run.tasks[task].documents.items()):
        record = log.get(task, doc_id)
        if record is not None:
            groups["correct" if document.correct else "wrong"].append(record)
    result: dict[str, MassSet | None] = {}
    for outcome, records in groups.items():
        if not records:
            result[outcome] = None
            continue
        before = all(r.image_mass_before is not None for r in records)
        result[outcome] = MassSet(
            image=np.stack([r.image_mass for r in records]),
            text=np.stack([r.text_mass for r in records]),
            image_before=np.stack([r.image_mass_before for r in records]) if before else None,
            text_before=np.stack([r.text_mass_before for r in records]) if before else None,
        )
    return result


def build_report(paths: list[str | Path], out: str | Path, settings: ReportSettings | None = None) -> dict:
    """Write the report for ``paths`` into ``out``; returns the summary (also written as summary.json)."""
    builder = _ReportBuilder(load_runs(paths), Path(out), settings or ReportSettings())
    return builder.write()


class _ReportBuilder:
    """Accumulates the report's blocks, notes, skipped plots and summary, one section at a time."""

    def __init__(self, runs: list[Run], out: Path, settings: ReportSettings) -> None:
        self.runs, self.out, self.settings = runs, out, settings
        self.sources = {run.label: attention_source(run, settings.attention_overrides) for run in runs}
        self.logs = {label: source.log for label, source in self.sources.items()}
        self.tasks = sorted({task for run in runs for task in run.tasks})
        self.blocks: list[Block] = []
        self.notes = [f"{run.label}: {note}" for run in runs for note in run.notes]
        self.notes += [
            f"{run.label}: task {t} not analysed: {why}" for run in runs for t, why in run.skipped_tasks.items()
        ]
        self.skipped: list[str] = []
        self.figures: list[str] = []
        self.summary: dict = {"settings": asdict(settings), "runs": [], "tasks": {}}
        self.summaries = {
            task: {
                run.label: summarise([d.record for d in run.tasks[task].ordered()], settings.bootstrap, settings.seed)
                for run in runs
                if task in run.tasks
            }
            for task in self.tasks
        }

    def write(self) -> dict:
        self.out.mkdir(parents=True, exist_ok=True)
        self._introduction()
        for task in self.tasks:
            task_runs = [run for run in self.runs if task in run.tasks]
            candidates = _baselines(task_runs, task, self.settings.baseline)
            self.summary["tasks"][task] = {}
            self.blocks.append(Heading(2, f"Task `{task}`"))
            self._results(task, task_runs)
            self._comparisons(task, task_runs, candidates)
            self._against_reference(task, task_runs)
            self._breakdowns(task, task_runs)
            self._layer_plots(task, task_runs, candidates)
            self._heatmaps(task, task_runs, candidates)
        self.blocks.append(Heading(2, "Notes"))
        self.blocks.append(Bullets(self.notes) if self.notes else Paragraph("None: every run's documents matched."))
        self.blocks.append(Heading(2, "Skipped plots"))
        self.blocks.append(Bullets(self.skipped) if self.skipped else Paragraph("None."))
        self.summary.update(figures=self.figures, skipped=self.skipped, notes=self.notes)
        (self.out / "report.md").write_text(to_markdown(self.blocks), encoding="utf-8")
        (self.out / "report.html").write_text(to_html(self.blocks, self.out, "VSR analysis report"), encoding="utf-8")
        (self.out / "summary.json").write_text(json.dumps(self.summary, indent=2, default=str), encoding="utf-8")
        return self.summary

    def _introduction(self) -> None:
        settings = self.settings
        self.blocks += [
            Heading(1, "VSR analysis report"),
            Paragraph(
                f"Accuracy intervals: 95% percentile bootstrap over documents ({settings.bootstrap} resamples, "
                f"seed {settings.seed}; every run of a task is resampled with the same document indices). "
                f"Paired comparisons against the baseline `{settings.baseline}` on the documents both answered: "
                "accuracy difference with its paired bootstrap interval and the exact McNemar test "
                "(two-sided binomial on the discordant pairs). fixed = baseline wrong, run right; "
                "broken = baseline right, run wrong."
            ),
            Heading(2, "Runs"),
        ]
        rows = []
        for run in self.runs:
            source = self.sources[run.label]
            rows.append([run.label, run.model, f"`{run.model_args}`", ", ".join(sorted(run.tasks)), source.description])
            self.summary["runs"].append(
                {
                    "label": run.label,
                    "model": run.model,
                    "model_args": run.model_args,
                    "results_files": [str(p) for p in run.results_files],
                    "tasks": sorted(run.tasks),
                    "attention_log": source.description,
                    "attention_log_used": source.log is not None,
                }
            )
        self.blocks += [
            TableBlock(["run", "model", "model_args", "tasks", "attention log"], rows),
            Heading(2, "Results overview"),
            Paragraph(
                "Accuracy [95% bootstrap interval] (n documents); F1, unparseable rate and comparisons per task below."
            ),
            TableBlock(*tables.overview_table([run.label for run in self.runs], self.tasks, self.summaries)),
        ]

    def _results(self, task: str, task_runs: list[Run]) -> None:
        rows, results = [], {}
        for run in task_runs:
            s = self.summaries[task][run.label]
            rows.append((run.label, s))
            reported = run.tasks[task].metrics.get("accuracy,none")
            results[run.label] = {**asdict(s), "results_json_accuracy": reported}
            if isinstance(reported, (int, float)) and not math.isclose(
                reported, s.accuracy, rel_tol=1e-9, abs_tol=1e-12
            ):
                self.notes.append(
                    f"{run.label} on {task}: accuracy from the samples ({s.accuracy:.6f}) differs from the "
                    f"results JSON ({reported:.6f})"
                )
        self.summary["tasks"][task]["results"] = results
        self.blocks += [Heading(3, "Results"), TableBlock(*tables.results_table(rows))]
        if len({s.n for _, s in rows}) > 1:
            self.blocks.append(
                Paragraph("The runs answered different numbers of documents (see n); comparisons use the shared ones.")
            )

    def _comparisons(self, task: str, task_runs: list[Run], candidates: list[Run]) -> None:
        rows, comparisons = [], {}
        for method in (run for run in task_runs if run not in candidates):
            baseline = _baseline_for(method, candidates)
            if baseline is None:
                continue
            base_docs, method_docs = baseline.tasks[task].documents, method.tasks[task].documents
            matched = sorted(set(base_docs) & set(method_docs))
            only_base = sorted(set(base_docs) - set(method_docs))
            only_method = sorted(set(method_docs) - set(base_docs))
            pair = f"{method.label} vs {baseline.label} on {task}"
            if only_base or only_method:
                self.notes.append(
                    f"{pair}: document sets differ; compared on the {len(matched)} shared documents; "
                    f"only in baseline: {_ids(only_base)}; only in run: {_ids(only_method)}"
                )
            if not matched:
                self.notes.append(f"{pair}: no shared documents, no comparison")
                continue
            c = compare(
                [base_docs[i].correct for i in matched],
                [method_docs[i].correct for i in matched],
                self.settings.bootstrap,
                self.settings.seed,
            )
            rows.append((method.label, baseline.label, c, len(only_base), len(only_method)))
            comparisons[method.label] = {
                **asdict(c),
                "baseline": baseline.label,
                "only_in_baseline": only_base,
                "only_in_run": only_method,
            }
        self.summary["tasks"][task]["comparisons"] = comparisons
        self.blocks.append(Heading(3, "Paired comparison with the baseline"))
        name = self.settings.baseline
        if rows:
            self.blocks.append(TableBlock(*tables.comparison_table(rows)))
        elif not candidates:
            self.blocks.append(
                Paragraph(
                    f"No baseline run (`{name}`) on this task: no paired comparison (choose one with `--baseline`)."
                )
            )
        else:
            self.blocks.append(
                Paragraph(
                    f"Every run on this task matches the baseline `{name}`: nothing to compare "
                    "(name one run as the baseline with `--baseline LABEL`)."
                )
            )

    def _against_reference(self, task: str, task_runs: list[Run]) -> None:
        """Ours beside the published accuracy of the same method, with our paired comparison to the baseline."""
        reference = self.settings.reference
        if reference is None:
            return
        comparisons = self.summary["tasks"][task].get("comparisons", {})
        baseline_reported = reference.get(task, self.settings.baseline)
        rows, entries = [], {}
        for run in task_runs:
            s = self.summaries[task][run.label]
            reported = reference.get(task, run.model)
            c = comparisons.get(run.label)
            reported_delta = (
                reported - baseline_reported
                if reported is not None and baseline_reported is not None and run.model != self.settings.baseline
                else None
            )
            rows.append(
                [
                    run.label,
                    f"{tables.number(s.accuracy)} [{tables.number(s.ci_low)}, {tables.number(s.ci_high)}]",
                    tables.number(reported) if reported is not None else "–",
                    tables.signed(s.accuracy - reported) if reported is not None else "–",
                    f"{tables.signed(c['difference'])} [{tables.signed(c['ci_low'])}, {tables.signed(c['ci_high'])}]"
                    if c
                    else "–",
                    tables.p_value(c["p_value"]) if c else "–",
                    tables.signed(reported_delta) if reported_delta is not None else "–",
                ]
            )
            entries[run.label] = {
                "model": run.model,
                "ours": s.accuracy,
                "reported": reported,
                "reported_difference_to_baseline": reported_delta,
            }
        self.summary["tasks"][task]["reference"] = {"name": reference.name, "runs": entries}
        headers = ["run", "ours [95% CI]", reference.name, "ours − reported", "Δ vs baseline [95% CI]", "McNemar p"]
        headers.append(f"Δ {reference.name}")
        self.blocks += [
            Heading(3, f"Against the results {reference.name}"),
            Paragraph(
                f"Ours: accuracy with its 95% bootstrap interval, and the paired comparison with the baseline "
                f"`{self.settings.baseline}` on the same documents. The last column is the published difference "
                "to the published baseline."
            ),
            TableBlock(headers, rows),
        ]

    def _breakdowns(self, task: str, task_runs: list[Run]) -> None:
        category = tables.category_breakdown(task_runs, task)
        relation = tables.relation_breakdown(task_runs, task)
        self.summary["tasks"][task]["breakdown"] = {
            "meta_category": _table_dict(category),
            "relation": _table_dict(relation),
        }
        self.blocks += [
            Heading(3, "Accuracy by meta-category"),
            TableBlock(*category),
            Heading(3, "Accuracy by relation"),
            TableBlock(*relation),
        ]

    def _layer_plots(self, task: str, task_runs: list[Run], candidates: list[Run]) -> None:
        self.blocks.append(Heading(3, "Attention mass per layer"))
        drawn = 0
        for run in task_runs:
            log = self.logs[run.label]
            if log is None:
                self.skipped.append(
                    f"layer plot of {run.label} on {task}: no attention log ({self.sources[run.label].description})"
                )
                continue
            masses = _mass_sets(run, log, task)
            if all(m is None for m in masses.values()):
                self.skipped.append(
                    f"layer plot of {run.label} on {task}: its attention log has no record of this task"
                )
                continue
            baseline = _baseline_for(run, candidates) if run not in candidates else None
            base_log = self.logs[baseline.label] if baseline is not None else None
            base_masses = _mass_sets(baseline, base_log, task) if base_log is not None else None
            name = f"layers_{slug(task)}_{slug(run.label)}.png"
            layer_mass_figure(
                self.out / name, task, run.label, masses, baseline.label if baseline else None, base_masses
            )
            self.blocks.append(Picture(name, f"attention mass per layer, {run.label}, {task}"))
            self.figures.append(name)
            drawn += 1
        if not drawn:
            self.blocks.append(Paragraph("No layer plot for this task (see Skipped plots)."))

    def _heatmaps(self, task: str, task_runs: list[Run], candidates: list[Run]) -> None:
        self.blocks.append(Heading(3, "Attention heatmaps"))
        logged = {
            doc_id
            for run in task_runs
            if self.logs[run.label]
            for (t, doc_id) in self.logs[run.label].records
            if t == task
        }
        if not logged:
            self.skipped.append(f"heatmaps on {task}: no run has an attention log with records of this task")
            self.blocks.append(Paragraph("No heatmap for this task (see Skipped plots)."))
            return
        methods = [run for run in task_runs if run not in candidates]
        primary = candidates[0] if candidates else None
        chosen = choose_examples(task, primary, methods, self.settings.examples, self.settings.seed, logged)
        self.blocks.append(
            Paragraph(
                f"{len(chosen)} documents: first those whose prediction a run changed from the baseline, then random "
                f"ones (seed {self.settings.seed}). Last-row, head-mean attention on the image tokens."
            )
        )
        for doc_id in chosen:
            name = f"heatmap_{slug(task)}_doc{doc_id}.png"
            path, note = document_figure(self.out / name, task, doc_id, task_runs, self.logs, self.settings.layer)
            if note:
                self.skipped.append(f"heatmap of {task} doc {doc_id}: {note}")
            if path is not None:
                self.blocks.append(Picture(name, f"attention heatmaps, {task} doc {doc_id}"))
                self.figures.append(name)


def _ids(doc_ids: list[int], shown: int = 10) -> str:
    if not doc_ids:
        return "none"
    more = f" … ({len(doc_ids)} in all)" if len(doc_ids) > shown else ""
    return ", ".join(str(i) for i in doc_ids[:shown]) + more


def _table_dict(table: tables.Table) -> dict:
    headers, rows = table
    return {"headers": headers, "rows": rows}
