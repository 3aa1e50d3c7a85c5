"""Command line: ``python -m analysis report ...`` and ``python -m analysis heatmap ...``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analysis.defaults import DEFAULT_BASELINE, DEFAULT_EXAMPLES
from analysis.runs import RunError, load_runs
from analysis.stats import DEFAULT_PERMUTATIONS, DEFAULT_RESAMPLES, DEFAULT_SEED
from models.attention_log import AttentionLogError

# The drawing modules (matplotlib) are imported inside the commands: `view` first points matplotlib's
# config folder into its cache folder, which must happen before matplotlib is imported.


def _overrides(values: list[str]) -> dict[str, str]:
    overrides = {}
    for value in values:
        if "=" not in value:
            raise SystemExit(f"--attention_log expects RUN=FOLDER (or RUN=none), got {value!r}")
        key, folder = value.rsplit("=", 1)
        overrides[key] = folder
    return overrides


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m analysis", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run_help = "an lmms-eval --output_path folder, a *_results.json, or a *_samples_<task>.jsonl"
    attention_help = (
        "RUN=FOLDER: the attention log of a run (RUN is its label, model name, or the RUN argument as typed; "
        "FOLDER 'none' ignores its log). Default: the attention_log in the run's model_args. Repeatable."
    )

    report = commands.add_parser("report", help="tables, paired significance, breakdowns, layer plots, heatmaps")
    report.add_argument("runs", nargs="+", metavar="RUN", help=run_help)
    report.add_argument("--out", required=True, type=Path, help="folder for report.md, report.html, PNGs, summary.json")
    report.add_argument(
        "--baseline", default=DEFAULT_BASELINE, help="run label or model name of the baseline (default: %(default)s)"
    )
    report.add_argument(
        "--bootstrap",
        type=int,
        default=DEFAULT_RESAMPLES,
        help="bootstrap resamples of a metric that is a mean of per-document scores (default: %(default)s)",
    )
    report.add_argument(
        "--aggregated_resamples",
        type=int,
        default=DEFAULT_PERMUTATIONS,
        help="resamples and permutations of a metric the task aggregates otherwise, such as POPE's F1 or MME's "
        "sums: each calls the task's aggregation once (default: %(default)s)",
    )
    report.add_argument(
        "--include_path",
        action="append",
        default=[],
        metavar="FOLDER",
        help="a folder of task YAMLs the runs were evaluated with (as lmms-eval's --include_path). Repeatable.",
    )
    report.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help="seed of the bootstrap and of the random examples (default: %(default)s)",
    )
    report.add_argument(
        "--examples", type=int, default=DEFAULT_EXAMPLES, help="heatmap documents per task (default: %(default)s)"
    )
    report.add_argument(
        "--layer",
        type=int,
        default=None,
        help="heatmap layer (0-based, negative from the end; default: mean of the last third)",
    )
    report.add_argument("--attention_log", action="append", default=[], metavar="RUN=FOLDER", help=attention_help)
    report.add_argument(
        "--reference",
        type=Path,
        default=None,
        metavar="FILE",
        help="published accuracies to show beside ours: JSON {'name': ..., 'accuracy': {task: {model: value}}}",
    )

    heatmap = commands.add_parser("heatmap", help="one document's attention heatmaps, the runs side by side")
    heatmap.add_argument("runs", nargs="+", metavar="RUN", help=run_help)
    heatmap.add_argument("--doc", type=int, required=True, help="lmms-eval doc_id")
    heatmap.add_argument("--task", default=None, help="task name (needed when the runs hold several tasks)")
    heatmap.add_argument(
        "--layer",
        type=int,
        default=None,
        help="layer (0-based, negative from the end; default: mean of the last third)",
    )
    heatmap.add_argument("--out", type=Path, default=None, help="PNG path (default: heatmap_<task>_doc<ID>.png here)")
    heatmap.add_argument("--attention_log", action="append", default=[], metavar="RUN=FOLDER", help=attention_help)
    view = commands.add_parser("view", help="browse runs side by side in a local web app; re-run one document live")
    view.add_argument("runs", nargs="+", metavar="RUN", help=run_help)
    view.add_argument("--port", type=int, default=7860, help="port (default: %(default)s)")
    view.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, this machine only)")
    view.add_argument("--share", action="store_true", help="also make a public Gradio share link (goes online)")
    view.add_argument(
        "--live", default=None, metavar="PATH", help="a checkpoint of a supported family for live re-runs"
    )
    view.add_argument("--device", default=None, help="device of the live model (default: cuda if available)")
    view.add_argument("--cache_dir", type=Path, default=None, help="figures and live answers (default: ~/.cache/...)")
    view.add_argument("--baseline", default=DEFAULT_BASELINE, help="baseline run label or model (default: %(default)s)")
    view.add_argument(
        "--include_path",
        action="append",
        default=[],
        metavar="FOLDER",
        help="a folder of task YAMLs the runs were evaluated with (their images and metrics). Repeatable.",
    )
    view.add_argument("--attention_log", action="append", default=[], metavar="RUN=FOLDER", help=attention_help)
    return parser


def _view(args: argparse.Namespace) -> int:
    from analysis.view import DEFAULT_CACHE, offline_environment, port_in_use

    problem = port_in_use(args.host, args.port)
    if problem is not None:
        raise SystemExit(f"error: {problem}")
    cache_dir = (args.cache_dir or DEFAULT_CACHE).expanduser().resolve()
    cache_dir.mkdir(parents=True, exist_ok=True)
    offline_environment(cache_dir)
    from analysis.attention_sources import attention_source
    from analysis.comparison import check_baseline
    from analysis.view import build_app, import_gradio
    from analysis.viewer import Viewer

    gr = import_gradio()
    live = None
    if args.live:
        from analysis.live import LiveError, LiveModel

        try:
            live = LiveModel(args.live, cache_dir, device=args.device)
        except LiveError as error:
            raise SystemExit(f"error: {error}") from None
    runs = load_runs(args.runs)
    try:
        check_baseline(runs, args.baseline)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    overrides = _overrides(args.attention_log)
    sources = {run.label: attention_source(run, overrides) for run in runs}
    logs = {label: source.log for label, source in sources.items()}
    notes = {label: source.description for label, source in sources.items()}
    viewer = Viewer(runs, logs, notes, cache_dir, args.baseline, args.include_path)
    if not viewer.tasks:
        raise SystemExit("error: the runs hold no task with a samples file to browse")
    app = build_app(viewer, live)
    theme = gr.themes.Base(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
    print(f"viewer on http://{args.host}:{args.port} (cache {cache_dir})", flush=True)
    app.queue(default_concurrency_limit=1).launch(
        server_name=args.host,
        server_port=args.port,
        share=args.share,
        theme=theme,
        ssr_mode=False,
        allowed_paths=[str(cache_dir)],
        quiet=True,
    )
    return 0


def _heatmap(args: argparse.Namespace) -> int:
    from analysis.attention_sources import attention_source
    from analysis.heatmaps import document_figure
    from analysis.report import slug

    runs = load_runs(args.runs)
    tasks = sorted({task for run in runs for task in run.tasks})
    task = args.task
    if task is None:
        if len(tasks) != 1:
            raise SystemExit(f"the runs hold tasks {', '.join(tasks) or 'none'}: pick one with --task")
        task = tasks[0]
    if task not in tasks:
        raise SystemExit(f"task {task} is not in the runs (they hold {', '.join(tasks) or 'none'})")
    overrides = _overrides(args.attention_log)
    sources = {run.label: attention_source(run, overrides) for run in runs}
    for label, source in sources.items():
        if source.log is None:
            print(f"{label}: no attention map ({source.description})", file=sys.stderr)
    out = args.out or Path(f"heatmap_{slug(task)}_doc{args.doc}.png")
    path, note = document_figure(out, task, args.doc, runs, {k: s.log for k, s in sources.items()}, args.layer)
    if note:
        print(note, file=sys.stderr)
    if path is None:
        return 1
    print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "heatmap":
            return _heatmap(args)
        if args.command == "view":
            return _view(args)
        from analysis.reference import load_reference
        from analysis.report import ReportSettings, build_report

        settings = ReportSettings(
            baseline=args.baseline,
            bootstrap=args.bootstrap,
            seed=args.seed,
            examples=args.examples,
            layer=args.layer,
            attention_overrides=_overrides(args.attention_log),
            reference=load_reference(args.reference) if args.reference else None,
            aggregated_resamples=args.aggregated_resamples,
            include_path=args.include_path,
        )
        summary = build_report(args.runs, args.out, settings)
    except (RunError, AttentionLogError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{args.out / 'report.md'} ({len(summary['figures'])} figures, {len(summary['skipped'])} skipped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
