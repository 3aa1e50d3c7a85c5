"""The six WhatsUp subsets: their files, how their rows name an image and a relation, and the question AdaptVis
asks of each (its ``prompts/*_with_answer_*_options.jsonl``: the option words in its order).

One declaration per subset; the data reader, the prompt and the scoring read it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Subset:
    name: str  # the task name
    official: str  # the dataset's name in whatsup_vlms and AdaptVis (--dataset)
    annotation: str  # the JSON file under $WHATSUP_DATA_DIR
    image_folder: str  # where its images are, under $WHATSUP_DATA_DIR
    rows: str  # "controlled": {image_path, caption_options}; "qa": [image_id, correct caption, wrong caption]
    objects: int  # 1: "Where is the X in the photo?", 2: "Where is the X in relation to the Y?"
    options: tuple[str, ...]  # the answer words, in the order the question lists them

    @property
    def relations(self) -> tuple[str, ...]:
        return self.options


SUBSETS = {
    subset.name: subset
    for subset in (
        Subset(
            "whatsup_controlled_a",
            "Controlled_Images_A",
            "controlled_images_dataset.json",
            "controlled_images",
            "controlled",
            2,
            ("left", "right", "on", "under"),
        ),
        Subset(
            "whatsup_controlled_b",
            "Controlled_Images_B",
            "controlled_clevr_dataset.json",
            "controlled_clevr",
            "controlled",
            2,
            ("left", "right", "front", "behind"),
        ),
        Subset(
            "whatsup_coco_one",
            "COCO_QA_one_obj",
            "coco_qa_one_obj.json",
            "val2017",
            "qa",
            1,
            ("left", "right", "top", "bottom"),
        ),
        Subset(
            "whatsup_coco_two",
            "COCO_QA_two_obj",
            "coco_qa_two_obj.json",
            "val2017",
            "qa",
            2,
            ("left", "right", "above", "below"),
        ),
        Subset(
            "whatsup_vg_one",
            "VG_QA_one_obj",
            "vg_qa_one_obj.json",
            "vg_images",
            "qa",
            1,
            ("left", "right", "front", "behind", "top", "bottom"),
        ),
        Subset(
            "whatsup_vg_two",
            "VG_QA_two_obj",
            "vg_qa_two_obj.json",
            "vg_images",
            "qa",
            2,
            ("left", "right", "front", "behind", "above", "below"),
        ),
    )  # fmt: skip
}
