"""A synthetic spatial-reasoning set in VSR's folder layout, with COCO boxes: data a tiny model can learn offline.

Images hold two or three objects of distinct COCO categories, each drawn as its
own shape and colour; captions are ``The SUBJ is RELATION the OBJ.`` for VSR
relations that boxes decide, labelled by :func:`relation_holds` (see
``geometry.py`` for the exact definitions). Usage::

    python -m vsr_tasks.synthetic OUT --n_train 2000 --n_dev 500 --n_test 500 --seed 0 [--image_size 224]
"""

from __future__ import annotations

from vsr_tasks.synthetic.generate import generate, image_name
from vsr_tasks.synthetic.geometry import RELATIONS, caption, parse_caption, relation_holds, relation_is_clear
from vsr_tasks.synthetic.scene import CATEGORIES

__all__ = [
    "CATEGORIES",
    "RELATIONS",
    "caption",
    "generate",
    "image_name",
    "parse_caption",
    "relation_holds",
    "relation_is_clear",
]
