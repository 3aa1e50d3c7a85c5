"""Reading an image file for a model: decoded in full, a truncated or unreadable file refused by name.

lmms-eval sets PIL's ``ImageFile.LOAD_TRUNCATED_IMAGES`` at import, so a half-downloaded COCO image would otherwise be
padded with grey and answered as if it were whole, with nothing in any log. Every image our tasks, fine-tuning and
profiling read goes through :func:`open_rgb`, which decodes with that flag off (under a lock, restoring it after)
and names the file when the data ends early.
"""

from __future__ import annotations

import threading
from pathlib import Path

from PIL import Image, ImageFile, UnidentifiedImageError

_FLAG_LOCK = threading.Lock()  # the flag is module-global in PIL: one strict decode at a time


class ImageFileError(OSError):
    """An image file is missing, truncated or not an image; the message names the file."""


def open_rgb(path: str | Path) -> Image.Image:
    """The image at ``path`` fully decoded, as RGB."""
    path = Path(path)
    if not path.is_file():
        raise ImageFileError(f"image {path} not found")
    with _FLAG_LOCK:
        previous = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            with Image.open(path) as image:
                image.load()
                return image.convert("RGB")
        except UnidentifiedImageError:
            raise ImageFileError(f"image {path} is not an image file PIL can read") from None
        except (OSError, SyntaxError, ValueError) as error:  # PIL reports truncated or corrupt data as these
            raise ImageFileError(
                f"image {path} is truncated or corrupt ({error}): replace the file (a partial image is never answered)"
            ) from None
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = previous
