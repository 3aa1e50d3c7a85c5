"""``python -m analysis view RUN [RUN ...]``: browse runs side by side in a local Gradio app; re-run one document live.

Offline by construction: analytics off, system fonts (no Google Fonts), no server-side rendering, the server on
127.0.0.1 unless ``--host`` says otherwise. Everything it writes (figures, live answers, Gradio's and matplotlib's
temporary files) goes under ``--cache_dir``. The callbacks are :class:`analysis.viewer.Viewer` methods; this module
only lays out the page and wires the widgets.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the viewer imports matplotlib, which must wait for offline_environment()
    from analysis.viewer import Viewer

GRADIO_MISSING = "the viewer needs Gradio: pip install 'vsr-attention-steering[app]'"
DEFAULT_CACHE = Path("~/.cache/vsr_attention_steering/view").expanduser()
ANSWER_HEADERS = ["run", "answer", "first-token confidence", "verdict / score"]


def offline_environment(cache_dir: Path) -> None:
    """Before Gradio is imported: no telemetry, and temporary files under the cache folder."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ["GRADIO_TEMP_DIR"] = str(cache_dir / "gradio")
    os.environ.setdefault("MPLCONFIGDIR", str(cache_dir / "matplotlib"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def port_in_use(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be served (None when it can): checked before the runs or a live model load, so a busy
    port costs a line, not a minute of loading and a Gradio traceback."""
    import socket

    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as error:
        return f"--host {host}: not an address here ({error.strerror})"
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            return f"--port {port} is not free on {host} ({error.strerror}): pass another --port"
    return None


def import_gradio():
    try:
        import gradio
    except ImportError:
        raise SystemExit(GRADIO_MISSING) from None
    return gradio


def build_app(viewer: Viewer, live=None):
    """The page: task and filter, navigation, the document, the runs' answers, heatmaps, layer plot, live re-run."""
    gr = import_gradio()
    from analysis.viewer import ALL, DEFAULT_LAYER

    first_task = viewer.tasks[0] if viewer.tasks else None

    def docs(task: str, choice: str) -> list[int]:
        return viewer.filtered(task, choice) if task else []

    def show(task: str, choice: str, position: int, layer: int):
        ids = docs(task, choice)
        if not ids:
            empty = viewer.counter(0, ids)
            return empty, gr.update(maximum=1, value=1), None, "no document in this set", None, "", [], None, "", None
        position = min(max(int(position), 0), len(ids) - 1)
        view = viewer.document(task, ids[position], int(layer))
        return (
            viewer.counter(position, ids),
            gr.update(minimum=1, maximum=len(ids), value=position + 1),
            ids[position],
            view.info,
            view.image,
            view.image_note,
            view.answers,
            str(view.heatmap) if view.heatmap else None,
            view.heatmap_note,
            str(view.layer_plot),
        )

    with gr.Blocks(title="Attention viewer", analytics_enabled=False) as app:
        gr.Markdown("## Attention viewer: runs side by side, any task")
        position = gr.State(0)
        with gr.Row():
            task = gr.Dropdown(viewer.tasks, value=first_task, label="task", elem_id="task")
            choice = gr.Dropdown(
                viewer.filters(first_task) if first_task else [ALL], value=ALL, label="filter", elem_id="filter"
            )
            counter = gr.Markdown(elem_id="counter")
        with gr.Row():
            previous = gr.Button("◀ previous", elem_id="previous")
            following = gr.Button("next ▶", elem_id="next")
            slider = gr.Slider(1, 2, value=1, step=1, label="document in this set", elem_id="doc_slider")
            doc_box = gr.Number(label="doc id", precision=0, elem_id="doc_id")
            go = gr.Button("go to doc id", elem_id="go")
        message = gr.Markdown(elem_id="message")
        info = gr.Markdown(elem_id="info")
        with gr.Row():
            with gr.Column(scale=1):
                image = gr.Image(label="original image(s)", interactive=False, height=260, elem_id="original")
                image_note = gr.Markdown(elem_id="image_note")
            with gr.Column(scale=2):
                answers = gr.Dataframe(headers=ANSWER_HEADERS, label="answers", interactive=False, elem_id="answers")
                layer_plot = gr.Image(label="attention per layer (this document)", interactive=False, elem_id="layers")
        layer = gr.Slider(
            DEFAULT_LAYER,
            max(viewer.num_layers(first_task) - 1, 0) if first_task else 0,
            value=DEFAULT_LAYER,
            step=1,
            label="heatmap layer (-1: mean of the last third, as analysis report)",
            elem_id="layer",
        )
        heatmap = gr.Image(label="last-row attention, every run at this layer", interactive=False, elem_id="heatmap")
        heatmap_note = gr.Markdown(elem_id="heatmap_note")
        outputs = [counter, slider, doc_box, info, image, image_note, answers, heatmap, heatmap_note, layer_plot]

        def on_filter(task_value, choice_value, layer_value):
            return (0, *show(task_value, choice_value, 0, layer_value))

        def on_task(task_value, layer_value):
            options = viewer.filters(task_value)
            return (gr.update(choices=options, value=ALL), 0, *show(task_value, ALL, 0, layer_value))

        def on_step(delta):
            def handler(task_value, choice_value, position_value, layer_value):
                moved = viewer.step(position_value, delta, docs(task_value, choice_value))
                return (moved, *show(task_value, choice_value, moved, layer_value))

            return handler

        def on_slider(task_value, choice_value, slider_value, layer_value):
            moved = int(slider_value) - 1
            return (moved, *show(task_value, choice_value, moved, layer_value))

        def on_go(task_value, choice_value, doc_value, position_value, layer_value):
            found, why = viewer.locate(doc_value, docs(task_value, choice_value))
            moved = position_value if found is None else found
            return (moved, f"⚠ {why}" if why else "", *show(task_value, choice_value, moved, layer_value))

        common = [task, choice, position, layer]
        task.change(on_task, [task, layer], [choice, position, *outputs])
        choice.change(on_filter, [task, choice, layer], [position, *outputs])
        previous.click(on_step(-1), common, [position, *outputs])
        following.click(on_step(+1), common, [position, *outputs])
        slider.release(on_slider, [task, choice, slider, layer], [position, *outputs])
        go.click(on_go, [task, choice, doc_box, position, layer], [position, message, *outputs])
        layer.change(lambda *values: show(*values), common, outputs)
        app.load(lambda *values: show(*values), common, outputs)

        if live is not None:
            sliders = {model: method.sliders for model, method in live.models.items()}
            _live_panel(gr, viewer, live, sliders, task, choice, position, layer, docs)
    return app


def _live_panel(gr, viewer: Viewer, live, sliders: dict, task, choice, position, layer, docs) -> None:
    """A method picker, its sliders (initialised from the runs' model_args), Run, and the answer with its heatmap."""
    gr.Markdown(f"### Live re-run on `{live.checkpoint}` (loaded on the first request; one request at a time)")
    methods = list(sliders)
    with gr.Row():
        method = gr.Dropdown(methods, value=methods[0], label="method", elem_id="live_method")
        run = gr.Button("Run", variant="primary", elem_id="live_run")
    controls, names = [], []
    for name_of_method, ranges in sliders.items():
        defaults = live_defaults(viewer, name_of_method)
        with gr.Row(visible=name_of_method == methods[0]) as row:
            for name, (low, high, step) in ranges.items():
                value = min(max(float(defaults.get(name, low)), low), high)
                controls.append(gr.Slider(low, high, value=value, step=step, label=name, elem_id=f"live_{name}"))
                names.append((name_of_method, name))
        controls.append(row)
        names.append((name_of_method, None))
    status = gr.Markdown(elem_id="live_status")
    result = gr.Markdown(elem_id="live_answer")
    live_heatmap = gr.Image(label="live: last-row attention", interactive=False, elem_id="live_heatmap")
    sliders_only = [c for c, (_, n) in zip(controls, names) if n is not None]
    slider_names = [(m, n) for m, n in names if n is not None]
    rows = [c for c, (_, n) in zip(controls, names) if n is None]
    row_methods = [m for m, n in names if n is None]

    method.change(lambda value: [gr.update(visible=m == value) for m in row_methods], [method], rows)

    def busy():
        return "⏳ running (one request at a time) ..."

    def answer(method_value, task_value, choice_value, position_value, layer_value, *values):
        ids = docs(task_value, choice_value)
        if not ids:
            return "no document", "", None
        doc_id = ids[min(position_value, len(ids) - 1)]
        logged = live_defaults(viewer, method_value)  # the run's other arguments (its layers), under the sliders
        settings = {n: v for n, v in logged.items() if n not in live.models[method_value].sliders}
        settings.update({n: float(v) for (m, n), v in zip(slider_names, values) if m == method_value})
        prompt, images, max_new_tokens = viewer.live_request(task_value, doc_id)
        chosen_layer = None if int(layer_value) < 0 else int(layer_value)
        outcome = live.run(
            method_value, settings, task_value, doc_id, prompt, images, chosen_layer, max_new_tokens=max_new_tokens
        )
        confidence = "" if outcome.confidence is None else f", first-token confidence {outcome.confidence:.3f}"
        cached = " (from the cache)" if outcome.cached else ""
        text = (
            f"**{method_value}** on doc {doc_id}: answer **{outcome.answer.strip() or '(empty)'}**{confidence}{cached}"
        )
        if outcome.decision:
            text += f"  \ndecision: `{outcome.decision}`"
        return "done", text, outcome.heatmap

    run.click(busy, None, status, queue=False).then(
        answer,
        [method, task, choice, position, layer, *sliders_only],
        [status, result, live_heatmap],
        concurrency_limit=1,
    )


def live_defaults(viewer: Viewer, method: str) -> dict:
    """The settings of ``method`` (a model name) as the first run of that method logged them (its model_args: the
    sliders' values and the method's other arguments, a layer range), else the registry's defaults."""
    from models.methods import method_of_model

    declared = method_of_model(method)
    accepted = {argument.name for argument in declared.arguments()} - {"preset"}
    defaults = {name: declared.defaults()[name] for name in declared.sliders}
    for run in viewer.runs:
        if run.model not in declared.models:
            continue
        log = viewer.logs.get(run.label)
        for name in sorted(accepted & set(run.args)):
            defaults[name] = float(run.args[name]) if name in declared.sliders else run.args[name]
        if "layers" in accepted and log is not None and log.records:  # the layers the run resolved (VEA profiles)
            record = next(iter(log.records.values()))
            layers = record.decision.get("layers")
            if layers:
                defaults["layers"] = "[" + ",".join(str(layer) for layer in layers) + "]"
        break
    return defaults
