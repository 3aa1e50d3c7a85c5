"""``python -m analysis report``: runs in, report.md + report.html + PNGs + summary.json out.

The report opens with the comparison across every task the runs evaluated (``analysis.comparison``): one overview
row per task's primary metric and a forest plot of the paired differences. Then a section per task: a VSR task as
before (accuracy, McNemar, breakdowns, layer plots, heatmaps); any other task its metrics and the documents a run
changed against its baseline. Everything degrades per section: a run without an attention log still gets its
tables, and the report lists every plot it did not draw with the reason, so nothing disappears silently.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from analysis import tables
from analysis.attention_sources import attention_source
from analysis.comparison import TaskComparison, baseline_for, baseline_runs, check_baseline, compare_runs
from analysis.defaults import DEFAULT_BASELINE, DEFAULT_EXAMPLES  # noqa: E402  (re-exported)
from analysis.document_images import NO_IMAGE, document_pictures
from analysis.heatmaps import choose_examples, document_figure
from analysis.plots import OUTCOMES, MassSet, forest_figure, layer_mass_figure
from analysis.reference import Reference
from analysis.render import Block, Bullets, Heading, Paragraph, Picture, TableBlock, to_html, to_markdown
from analysis.runs import Run, load_runs
from analysis.stats import DEFAULT_PERMUTATIONS, DEFAULT_RESAMPLES, DEFAULT_SEED
from analysis.visuals import write_thumbnail
from models.attention_log import AttentionLog

CHANGED_SHOWN = 10  # documents listed per direction of change


@dataclass
class ReportSettings:
    baseline: str = DEFAULT_BASELINE
    bootstrap: int = DEFAULT_RESAMPLES
    seed: int = DEFAULT_SEED
    examples: int = DEFAULT_EXAMPLES
    layer: int | None = None
    attention_overrides: dict[str, str] = field(default_factory=dict)  # run label / model / RUN arg -> folder or 'none'
    reference: Reference | None = None  # published accuracies to show beside ours
    aggregated_resamples: int = DEFAULT_PERMUTATIONS  # resamples and permutations of metrics that are not means
    include_path: list[str] = field(default_factory=list)  # task folders beyond lmms-eval's own and ours


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "run"


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
    settings = settings or ReportSettings()
    runs = load_runs(paths)
    check_baseline(runs, settings.baseline)
    builder = _ReportBuilder(runs, Path(out), settings)
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
        self.vsr_tasks = [t for t in self.tasks if all(run.tasks[t].is_vsr for run in runs if t in run.tasks)]
        self.comparisons = {
            c.task: c
            for c in compare_runs(
                runs,
                settings.baseline,
                settings.bootstrap,
                settings.aggregated_resamples,
                settings.seed,
                settings.include_path,
            )
        }

    def write(self) -> dict:
        self.out.mkdir(parents=True, exist_ok=True)
        self._introduction()
        self._overview()
        for task in self.tasks:
            task_runs = [run for run in self.runs if task in run.tasks]
            candidates = baseline_runs(task_runs, task, self.settings.baseline)
            self.summary["tasks"][task] = {"metrics": _metrics_dict(self.comparisons[task])}
            self.blocks.append(Heading(2, f"Task `{task}`"))
            self._task_metrics(self.comparisons[task])
            self._against_reference(task, task_runs)
            self._changed_documents(task, task_runs, self.comparisons[task])
            if task in self.vsr_tasks:  # VSR adds its breakdowns and the attention figures
                self._breakdowns(task, task_runs)
                self._layer_plots(task, task_runs, candidates)
                self._heatmaps(task, task_runs, candidates)
        self.blocks.append(Heading(2, "Notes"))
        self.blocks.append(Bullets(self.notes) if self.notes else Paragraph("None: every run's documents matched."))
        self.blocks.append(Heading(2, "Skipped plots"))
        self.blocks.append(Bullets(self.skipped) if self.skipped else Paragraph("None."))
        self.summary.update(figures=self.figures, skipped=self.skipped, notes=self.notes)
        (self.out / "report.md").write_text(to_markdown(self.blocks), encoding="utf-8")
        (self.out / "report.html").write_text(to_html(self.blocks, self.out, "Analysis report"), encoding="utf-8")
        (self.out / "summary.json").write_text(json.dumps(self.summary, indent=2, default=str), encoding="utf-8")
        return self.summary

    def _introduction(self) -> None:
        settings = self.settings
        self.blocks += [
            Heading(1, "Analysis report"),
            Paragraph(
                "Every metric is the task's own aggregation of the run's documents (it equals the run's results "
                "JSON), with a 95% percentile bootstrap interval over documents (every run of a task resampled "
                f"with the same document indices, seed {settings.seed}). A metric that is the mean of per-document "
                f"scores is resampled through those scores ({settings.bootstrap} resamples) and compared with the "
                "exact McNemar test (0/1 scores) or a paired sign-flip permutation test; any other metric is "
                f"re-aggregated on {settings.aggregated_resamples} paired resamples and compared with a paired "
                "permutation test (each document's two answers swapped between the runs). Each run is compared "
                f"with the baseline `{settings.baseline}` (the same checkpoint preferred) on the documents both "
                "answered; * marks a difference that survives Holm's correction over every comparison in this "
                "report (adjusted p < 0.05). On VSR: fixed = baseline wrong, run right; broken = baseline right, "
                "run wrong."
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
        self.blocks.append(TableBlock(["run", "model", "model_args", "tasks", "attention log"], rows))

    def _overview(self) -> None:
        """One row per task's primary metric: each run's value, each run's paired difference; the forest plot."""
        labels = [run.label for run in self.runs]
        headers, rows, entries = tables.overview_table(labels, [self.comparisons[t] for t in self.tasks])
        self.summary["overview"] = entries
        self.blocks += [
            Heading(2, "Results overview"),
            Paragraph(
                "Each task's primary metric (the first of its metric_list): value [95% bootstrap interval] per run, "
                "and each run's paired difference to its baseline [95% interval], p, * if it survives Holm. "
                "Every metric of every task is in its section below."
            ),
            TableBlock(headers, rows),
        ]
        forest = [
            (f"{row['task']} ({row['metric']})", [
                (label, c["difference"], c["ci_low"], c["ci_high"], c["significant"])
                for label, c in row["comparisons"].items()
            ])
            for row in entries
            if row["comparisons"]
        ]  # fmt: skip
        if forest:
            forest_figure(self.out / "forest.png", forest)
            self.blocks.append(Picture("forest.png", "paired differences to the baseline, per task"))
            self.figures.append("forest.png")
        else:
            self.skipped.append("forest plot: no paired comparison with a baseline in any task")

    def _against_reference(self, task: str, task_runs: list[Run]) -> None:
        """Ours beside the published numbers of the same method and checkpoint, with our paired comparison to the
        baseline; one row per run and referenced metric (any task)."""
        reference = self.settings.reference
        if reference is None or not reference.metrics(task):
            return
        comparison = self.comparisons[task]
        by_label = {run.label: run for run in task_runs}
        rows, metrics = [], {}
        for metric in reference.metrics(task):
            row = next((r for r in comparison.metrics if r.metric == metric), None)
            entries = {}
            for run in task_runs:
                pretrained = run.args.get("pretrained")
                reported = reference.get(task, run.model, metric, pretrained, run.args.get("preset"))
                summary = row.summaries.get(run.label) if row else None
                ours = summary.value if summary else None
                paired = row.comparisons.get(run.label) if row else None
                pairing = comparison.pairings.get(run.label)
                base = by_label.get(pairing.baseline) if pairing else None
                base_reported = (
                    reference.get(task, base.model, metric, base.args.get("pretrained"), base.args.get("preset"))
                    if base is not None
                    else None
                )
                reported_delta = (
                    reported - base_reported if reported is not None and base_reported is not None else None
                )
                rows.append(
                    [
                        run.label,
                        metric,
                        f"{tables.number(ours)} [{tables.number(summary.ci_low)}, {tables.number(summary.ci_high)}]"
                        if summary
                        else "–",
                        tables.number(reported) if reported is not None else "–",
                        tables.signed(ours - reported) if reported is not None and ours is not None else "–",
                        f"{tables.signed(paired.difference)} [{tables.signed(paired.ci_low)}, "
                        f"{tables.signed(paired.ci_high)}]"
                        if paired
                        else "–",
                        tables.p_value(paired.p_value) if paired else "–",
                        tables.signed(reported_delta) if reported_delta is not None else "–",
                    ]
                )
                entries[run.label] = {
                    "model": run.model,
                    "ours": ours,
                    "reported": reported,
                    "reported_difference_to_baseline": reported_delta,
                }
            metrics[metric] = entries
        first = reference.metrics(task)[0]
        self.summary["tasks"][task]["reference"] = {"name": reference.name, "runs": metrics[first], "metrics": metrics}
        headers = ["run", "metric", "ours [95% CI]", reference.name, "ours − reported", "Δ vs baseline [95% CI]", "p"]
        headers.append(f"Δ {reference.name}")
        self.blocks += [
            Heading(3, f"Against the results {reference.name}"),
            Paragraph(
                "Ours: the metric with its 95% bootstrap interval, and the paired comparison with the baseline "
                f"`{self.settings.baseline}` on the same documents. The last column is the published difference "
                "to the published baseline (published numbers in our unit: a share, not a percentage)."
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
            baseline = baseline_for(run, candidates) if run not in candidates else None
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

    def _task_metrics(self, comparison: TaskComparison) -> None:
        headers, rows = tables.metric_table(comparison)
        self.blocks += [Heading(3, "Metrics"), TableBlock(headers, rows)]
        notes = [f"{row.metric}: {problem}" for row in comparison.metrics for problem in row.problems]
        if comparison.not_metrics:
            notes.append(
                f"the results JSON also holds {', '.join(k.partition(',')[0] for k in comparison.not_metrics)}: "
                "not in the task's metric_list, not compared"
            )
        for pairing in comparison.pairings.values():
            if pairing.only_baseline or pairing.only_run:
                notes.append(
                    f"{pairing.run} vs {pairing.baseline}: compared on the {len(pairing.matched)} shared documents; "
                    f"only in the baseline: {_ids(pairing.only_baseline)}; only in the run: {_ids(pairing.only_run)}"
                )
        if not comparison.pairings and comparison.baselines and len(comparison.baselines) == len(comparison.runs):
            notes.append(
                f"Every run on this task matches the baseline `{self.settings.baseline}`: nothing to compare "
                "(name one run as the baseline with `--baseline LABEL`)."
            )
        elif not comparison.pairings:
            notes.append(f"no baseline run (`{self.settings.baseline}`) among this task's runs: no paired comparison")
        if notes:
            self.blocks.append(Bullets(notes))
            self.notes += [f"{comparison.task}: {note}" for note in notes]

    def _changed_documents(self, task: str, task_runs: list[Run], comparison: TaskComparison) -> None:
        """Per run: the documents it got wrong where its baseline was right, and the reverse, with thumbnails."""
        self.blocks.append(Heading(3, "Documents a run changed"))
        by_label = {run.label: run for run in task_runs}
        flips = {label: f for label, f in comparison.flips.items() if f is not None}
        self.summary["tasks"][task]["changed"] = {
            label: {"metric": f.metric, "worse": f.worse, "better": f.better} for label, f in flips.items()
        }
        if not flips:
            why = (
                "no run has a baseline" if not comparison.pairings else "no metric decomposes into per-document scores"
            )
            self.blocks.append(Paragraph(f"Not listed: {why}."))
            return
        shown = {doc_id for f in flips.values() for doc_id in (f.worse[:CHANGED_SHOWN] + f.better[:CHANGED_SHOWN])}
        documents = {doc_id: d for run in task_runs for doc_id, d in run.tasks[task].documents.items()}
        images, why_not = {}, ""
        for doc_id in sorted(shown):  # VSR: the image file; any other task: its own doc_to_visual
            pictures, missing = document_pictures(task, documents[doc_id], self.settings.include_path)
            images[doc_id] = [Image.fromarray(picture) for picture in pictures]
            why_not = why_not or (missing if not pictures and missing != NO_IMAGE else "")
        if why_not:
            self.skipped.append(f"thumbnails on {task}: {why_not}")
        for label, f in flips.items():
            pairing = comparison.pairings[label]
            base, run = by_label[pairing.baseline].tasks[task], by_label[label].tasks[task]
            directions = (("worse", f.worse), ("better", f.better))
            for direction, doc_ids in directions:
                if f.binary:
                    title = "baseline right, run wrong" if direction == "worse" else "baseline wrong, run right"
                else:
                    title = f"lower {f.metric} than the baseline" if direction == "worse" else f"higher {f.metric}"
                self.blocks.append(Paragraph(f"**{label}** vs `{pairing.baseline}`, {title}: {len(doc_ids)}"))
                if not doc_ids:
                    continue
                rows = [
                    [str(i), tables.excerpt(base.documents[i].input), tables.excerpt(str(base.documents[i].target), 40),
                     tables.excerpt(base.documents[i].response, 40), tables.excerpt(run.documents[i].response, 40)]
                    for i in doc_ids[:CHANGED_SHOWN]
                ]  # fmt: skip
                more = f" (the first {CHANGED_SHOWN} of {len(doc_ids)})" if len(doc_ids) > CHANGED_SHOWN else ""
                self.blocks.append(TableBlock(["doc", "question" + more, "target", pairing.baseline, label], rows))
                for doc_id in doc_ids[:CHANGED_SHOWN]:
                    for k, image in enumerate(images.get(doc_id, [])):
                        name = f"thumbs/{slug(task)}_doc{doc_id}_{k}.png"
                        if not (self.out / name).is_file():
                            write_thumbnail(image, self.out / name)
                        self.blocks.append(Picture(name, f"{task} doc {doc_id}, image {k + 1}"))


def _metrics_dict(comparison: TaskComparison) -> dict:
    """summary.json's view of a task's metrics: every number at full precision."""
    out = {}
    for row in comparison.metrics:
        out[row.key] = {
            "primary": row.primary,
            "aggregation": row.definition.aggregation_name if row.definition else None,
            "recomputed": bool(row.summaries),
            "problems": row.problems,
            "runs": {
                label: {
                    "results_json": row.reported.get(label),
                    **({"value": s.value, "ci_low": s.ci_low, "ci_high": s.ci_high, "n": s.n, "kind": s.kind}
                       if (s := row.summaries.get(label)) else {}),
                }
                for label in comparison.runs
            },
            "comparisons": {
                label: {
                    **asdict(c),
                    "baseline": comparison.pairings[label].baseline,
                    "holm_p": row.holm_p.get(label),
                    "significant": row.significant(label),
                    "only_in_baseline": comparison.pairings[label].only_baseline,
                    "only_in_run": comparison.pairings[label].only_run,
                }
                for label, c in row.comparisons.items()
            },
        }  # fmt: skip
    return out


def _ids(doc_ids: list[int], shown: int = 10) -> str:
    if not doc_ids:
        return "none"
    more = f" … ({len(doc_ids)} in all)" if len(doc_ids) > shown else ""
    return ", ".join(str(i) for i in doc_ids[:shown]) + more


def _table_dict(table: tables.Table) -> dict:
    headers, rows = table
    return {"headers": headers, "rows": rows}
