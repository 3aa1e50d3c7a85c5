"""VAF as the engine runs it (``--model vlm_vaf``, any family; ``qwen3vl_vaf``): see ``interventions.vaf``.

VAF edits every query row after the image, the question's as well as the last, so the shared prefix of the last-row
methods does not apply: each setting is one whole-prompt pass (its cheap form is in the attention itself: the edited
rows run through the fused kernel on scaled keys, in place of the plain call). A neutral setting (both factors 1)
changes nothing and is the baseline's pass, bit for bit.
"""

from __future__ import annotations

from interventions.vaf import VAF, Spans, VAFParams
from models.batch import GenerationSettings, PreparedBatch, Response
from models.host import MethodHost
from models.runner import LayerRangeArguments, MethodRunner
from models.spec import MethodSpec


class VAFRunner(LayerRangeArguments, MethodRunner):
    """Visual Amplification Fusion: in middle layers, the rows after the image attend more to it, less to the
    template before it."""

    def answer(
        self, host: MethodHost, batch: PreparedBatch, settings: GenerationSettings, points: list, share_neutral: bool
    ) -> list[Response]:
        """One whole-prompt pass per setting (``share_neutral`` changes nothing: a neutral pass is the plain one)."""
        return [self.whole_prompt(host, batch, settings, point) for point in points]

    def whole_prompt(
        self, host: MethodHost, batch: PreparedBatch, settings: GenerationSettings, point: VAFParams
    ) -> Response:
        """One pass under VAF (a neutral setting: the baseline's own pass, bit for bit)."""
        size, layers = batch.size, point.layers(self.depth)
        editor = None
        if not point.neutral:
            editor = VAF([point.enh_para] * size, [point.sup_para] * size, [layers] * size, batch.image_token_mask)
        with host.steering(batch, editor):
            response = host.generate(batch, settings)
        response.extras = self.decisions(batch, point, layers)
        return response

    def decisions(self, batch: PreparedBatch, point: VAFParams, layers: range) -> list[dict]:
        """Per sequence, for the attention log: the factors, the layers, and which keys and rows they touched."""
        spans = Spans.of(batch.image_token_mask)
        real = batch.inputs["attention_mask"].bool()
        length = batch.image_token_mask.shape[1]
        decisions = []
        for b in range(batch.size):
            first_row = int(spans.first_row[b])
            decisions.append(
                {
                    "decision": {
                        "enh_para": float(point.enh_para),
                        "sup_para": float(point.sup_para),
                        "layers": [layers.start, layers.stop],
                        "image_keys": int(spans.image[b].sum()),
                        "suppressed_keys": int((spans.before_image[b] & real[b]).sum()),
                        "prompt_rows_after_image": max(0, length - first_row),
                    }
                }
            )
        return decisions


VAF_METHOD = MethodSpec(
    name="vaf",
    title="VAF",
    summary="in middle layers every row after the image multiplies its image logits by `enh_para` and those of the "
    "template before the image by `sup_para` (ClearSight)",
    params=VAFParams,
    meanings={
        "enh_para": "factor on the image logits of every row after the image (`1`: no change)",
        "sup_para": "factor on the logits of the keys before the image: the template's opening, its system prompt "
        "(`1`: no change)",
        "start_layer": "the first edited layer (0-based)",
        "end_layer": "the edited layers end before it (none: the model's depth)",
    },
    extra=(),
    sweepable=("enh_para", "sup_para"),
    sliders={"enh_para": (1.0, 2.0, 0.05), "sup_para": (0.5, 1.0, 0.05)},
    runner=VAFRunner,
)
