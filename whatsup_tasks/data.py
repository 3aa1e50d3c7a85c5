"""Reading WhatsUp's official annotation files into documents, with errors that say what to fix.

Layout (whatsup_vlms' ``data/`` folder, as its Google Drive folder unpacks)::

    $WHATSUP_DATA_DIR/controlled_images_dataset.json  controlled_images/*.jpeg
    $WHATSUP_DATA_DIR/controlled_clevr_dataset.json   controlled_clevr/*.jpeg
    $WHATSUP_DATA_DIR/coco_qa_{one,two}_obj.json       val2017/<12-digit id>.jpg
    $WHATSUP_DATA_DIR/vg_qa_{one,two}_obj.json         vg_images/<id>.jpg

A controlled file is a list of ``{"image_path", "caption_options"}`` (four captions); a QA file a list of
``[image_id, correct caption, wrong caption]``. In every file the first caption is the correct one. Each subset's
relation is read as whatsup_vlms' ``dataset_zoo/aro_datasets.py`` reads it (the image file name for the controlled
sets, the correct caption for the others).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from whatsup_tasks.subsets import SUBSETS, Subset

DATA_DIR_VARIABLE = "WHATSUP_DATA_DIR"
# two-object captions: the relation phrase between the objects, longest first where phrases overlap
RELATION_PHRASES = (
    ("to the left of", "left"), ("to the right of", "right"), ("left of", "left"), ("right of", "right"),
    ("in front of", "front"), ("front of", "front"), ("behind", "behind"), ("on top of", "above"),
    ("above", "above"), ("below", "below"), ("under", "under"), ("on", "on"),
)  # fmt: skip
_ARTICLE = re.compile(r"^(?:a|an|the)\s+", re.IGNORECASE)
_ONE_OBJECT = re.compile(r"^(.*?)\s+(?:(?:on|at|in|to)\s+(?:the\s+)?)?(\w+)\s*\.?$", re.IGNORECASE)


class WhatsUpDataError(RuntimeError):
    """WhatsUp data is missing or malformed; the message names the variable, file or row."""


def data_dir() -> Path:
    value = os.environ.get(DATA_DIR_VARIABLE, "").strip()
    if not value:
        raise WhatsUpDataError(
            f"{DATA_DIR_VARIABLE} is not set: download WhatsUp's data (github.com/amitakamath/whatsup_vlms, its "
            f"Google Drive folder: the annotation JSONs and the image folders) and export "
            f"{DATA_DIR_VARIABLE}=/path/to/whatsup_vlms/data"
        )
    path = Path(value).expanduser()
    if not path.is_dir():
        raise WhatsUpDataError(f"{DATA_DIR_VARIABLE}={path} does not exist or is not a folder")
    return path


def strip_article(text: str) -> str:
    return _ARTICLE.sub("", text.strip()).strip()


def objects_of(caption: str, subset: Subset) -> tuple[str, str | None]:
    """(X, Y) of a correct caption: "A mug to the left of a plate" -> ("mug", "plate"); one object: "A dog on the
    left" -> ("dog", None)."""
    text = caption.strip().rstrip(".")
    if subset.objects == 1:
        found = _ONE_OBJECT.match(text)
        if found is None:
            raise ValueError(f"cannot find the object in {caption!r}")
        return strip_article(found.group(1)), None
    lowered = f" {text.lower()} "
    hits = [(lowered.find(f" {phrase} "), -len(phrase), phrase) for phrase, _ in RELATION_PHRASES]
    hits = [hit for hit in hits if hit[0] >= 0]
    if not hits:
        raise ValueError(f"no relation phrase ({', '.join(p for p, _ in RELATION_PHRASES)}) in {caption!r}")
    start, _, phrase = min(hits)
    subject, rest = text[:start].strip(), text[start + len(phrase) :].strip()
    if not subject or not rest:
        raise ValueError(f"cannot split {caption!r} around {phrase!r}")
    return strip_article(subject), strip_article(rest)


def relation_of(row, subset: Subset) -> str:
    """The gold answer word, read as whatsup_vlms reads the subset's relation."""
    if subset.rows == "controlled":
        name = Path(row["image_path"]).name
        if "left_of" in name:
            return "left"
        if "right_of" in name:
            return "right"
        if subset.name == "whatsup_controlled_a":
            return "on" if "_on_" in name else "under"
        return "front" if "_in-front_of_" in name else "behind"
    caption = str(row[1])
    if subset.objects == 1:
        return caption.strip().rstrip(".").split()[-1].lower()
    for phrase, relation in (("left of", "left"), ("right of", "right")):
        if phrase in caption:
            return relation
    if subset.name == "whatsup_coco_two":
        return "above" if "above" in caption else "below"
    if "front of" in caption:
        return "front"
    if "behind" in caption:
        return "behind"
    return "above"  # whatsup_vlms' "top"; AdaptVis' gold answer for these is "Above"


def image_path(row, subset: Subset, root: Path) -> Path:
    if subset.rows == "controlled":
        stored = Path(row["image_path"])
        candidates = [stored] if stored.is_absolute() else [root / stored]
        candidates.append(root / subset.image_folder / stored.name)
    elif subset.image_folder == "val2017":
        candidates = [root / "val2017" / f"{int(row[0]):012d}.jpg"]
    else:
        candidates = [root / "vg_images" / f"{row[0]}.jpg"]
    return next((c for c in candidates if c.is_file()), candidates[-1])


def load_documents(task: str, root: Path | None = None) -> list[dict]:
    """The subset's documents in file order: image, the correct caption, the objects, the gold relation."""
    subset = SUBSETS[task]
    root = root or data_dir()
    annotation = root / subset.annotation
    if not annotation.is_file():
        raise WhatsUpDataError(
            f"{annotation} is missing: {DATA_DIR_VARIABLE} must hold {subset.official}'s {subset.annotation}"
        )
    try:
        rows = json.loads(annotation.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise WhatsUpDataError(f"{annotation}: not valid JSON ({error.msg} at line {error.lineno})") from None
    documents, missing = [], []
    for index, row in enumerate(rows):
        try:
            caption = row["caption_options"][0] if subset.rows == "controlled" else row[1]
            x, y = objects_of(str(caption), subset)
            relation = relation_of(row, subset)
        except (KeyError, IndexError, TypeError, ValueError) as error:
            raise WhatsUpDataError(f"{annotation}, row {index}: {error}") from None
        if relation not in subset.options:
            raise WhatsUpDataError(
                f"{annotation}, row {index}: relation {relation!r} is not one of {', '.join(subset.options)}"
            )
        path = image_path(row, subset, root)
        if not path.is_file():
            missing.append(str(path))
        documents.append({"image": str(path), "caption": str(caption), "subject": x, "object": y or "",
                          "relation": relation})  # fmt: skip
    if missing:
        raise WhatsUpDataError(
            f"{len(missing)} of the {len(rows)} {subset.official} images are missing (first: {missing[0]}): put "
            f"the subset's {subset.image_folder}/ folder under {DATA_DIR_VARIABLE}={root}"
        )
    return documents
