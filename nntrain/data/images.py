"""Pictures in class folders (``data: {source: images, path: FOLDER}``), streamed from disk.

The layout is Keras's (``keras.utils.image_dataset_from_directory``): one sub-folder per class,
named after it, with the class's pictures inside (sub-folders of those are searched too). The
class names, in sorted order, are the labels (the run's labels.json).

The files are listed here rather than by ``image_dataset_from_directory`` so that the split is
nntrain's own, the same as every source's: stratified by class, seeded, and its counts in the
manifest. Before training, one pass reads every file once, one at a time: it checks that it is a
whole picture (Pillow decodes it fully, so a truncated file is caught here and named, not in
the middle of an epoch), collects the sizes and fingerprints the bytes. Training then reads the
pictures again in batches through tf.data (decoded by TensorFlow), so memory holds a few
batches and the list of paths, never the folder.

Files whose extension is not a picture's (README.txt, .DS_Store, labels.csv) are skipped, with
a note naming how many and the first one: folders of pictures often carry such files, and the
Keras convention ignores them too. A file with a picture's extension that is not a readable
PNG, JPEG, BMP or GIF is an error naming it: it was meant to be trained on.

Pixels reach the model as float32 values 0-255 (as read); scaling to 0-1 is the model's
``rescaling`` layer, so the saved model takes raw pixels.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nntrain.config.schema import ImageData
from nntrain.errors import ConfigError, DataError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
# What Pillow calls the formats TensorFlow's decode_image reads.
FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "BMP": "BMP", "GIF": "GIF", "MPO": "JPEG"}
CHANNELS = {"grayscale": 1, "rgb": 3}
PREFETCH = 2  # batches decoded ahead of the one the model works on
# Pixels (float32) of one batch when pictures are evaluated or predicted on, where nntrain picks
# the batch size (training's is the config's batch_size). Memory holds PREFETCH + 1 batches and
# the model's activations on one, whatever the folder's size: 16 MiB is 341 pictures of 64x64
# RGB, enough that the per-batch overhead is lost in the decoding.
BATCH_BYTES = 16 * 2**20
# glibc's malloc serves a freed block of any size up to 32 MiB from its heaps once one has been
# freed (its mmap threshold rises to it), and each of its per-thread heaps keeps what it once
# held: with tf.data's threads decoding batch after batch, a process's memory grew with the
# number of batches read, i.e. with the folder (docs/benchmarks.md). A fixed threshold turns
# that off: blocks of 1 MiB or more (a batch, a model's activations on it) are mapped and
# returned to the system when freed, small ones still come from the heaps.
MMAP_THRESHOLD = 2**20
M_MMAP_THRESHOLD = -3  # mallopt's parameter number, from glibc's malloc.h


def is_picture(path: str | Path) -> bool:
    return Path(path).suffix.lower() in EXTENSIONS


def is_picture_source(source: str) -> bool:
    """Whether --data names pictures: a folder, or a file with a picture's extension."""
    return source != "-" and (Path(source).is_dir() or is_picture(source))


@dataclass
class Folder:
    """The pictures of a class folder tree, as found: paths on disk and as shown in messages."""

    classes: list[str]
    files: list[str] = field(default_factory=list)  # absolute or as given, openable
    shown: list[str] = field(default_factory=list)  # the path under the name the user wrote
    relative: list[str] = field(default_factory=list)  # the path inside the folder
    labels: list[int] = field(default_factory=list)  # class index of each file
    skipped: list[str] = field(default_factory=list)  # files that are not pictures

    def skipped_note(self) -> str | None:
        if not self.skipped:
            return None
        n = len(self.skipped)
        return (f"skipped {n} file{'s' if n != 1 else ''} that {'are' if n != 1 else 'is'} "
                f"not a picture by {'their' if n != 1 else 'its'} extension (e.g. "
                f"{self.skipped[0]}); pictures are {', '.join(EXTENSIONS)}")


def _walk(root: str) -> list[str]:
    """Every file under root, as paths relative to it, in sorted order; hidden folders left
    out (.ipynb_checkpoints and the like)."""
    out: list[str] = []
    for here, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = os.path.relpath(here, root)
        out += [os.path.normpath(os.path.join(rel, f)) for f in sorted(files)]
    return out


def scan_classes(path: str, name: str) -> Folder:
    """The class sub-folders of ``path`` and their pictures; ``name`` is the folder as the user
    wrote it, for messages."""
    if not os.path.exists(path):
        raise DataError.in_file(name, "no such folder")
    if not os.path.isdir(path):
        raise DataError.in_file(name, "is a file, but pictures are read from a folder with "
                                "one sub-folder per class (NAME/cat/1.png, NAME/dog/2.png)")
    classes = sorted(d for d in os.listdir(path)
                     if not d.startswith(".") and os.path.isdir(os.path.join(path, d)))
    if not classes:
        loose = [f for f in sorted(os.listdir(path)) if is_picture(f)]
        found = f" (it holds {len(loose)} pictures directly)" if loose else ""
        raise DataError.in_file(name, f"has no class sub-folders{found}; put the pictures of "
                                "each class in a folder named after it: "
                                f"{name}/cat/1.png, {name}/dog/2.png")
    folder = Folder(classes)
    for index, cls in enumerate(classes):
        before = len(folder.files)
        for rel in _walk(os.path.join(path, cls)):
            shown = os.path.join(name, cls, rel)
            if not is_picture(rel):
                folder.skipped.append(shown)
                continue
            folder.files.append(os.path.join(path, cls, rel))
            folder.shown.append(shown)
            folder.relative.append(os.path.join(cls, rel))
            folder.labels.append(index)
        if len(folder.files) == before:
            raise DataError.in_file(os.path.join(name, cls), "the class folder has no pictures "
                                    f"({', '.join(EXTENSIONS)}); add some, or remove the folder")
    return folder


def scan_pictures(path: str, name: str) -> Folder:
    """For predict: one picture file, or every picture under a folder (class sub-folders or
    not), in sorted order."""
    if not os.path.exists(path):
        raise DataError.in_file(name, "no such file or folder")
    folder = Folder([])
    if not os.path.isdir(path):
        folder.files, folder.shown, folder.labels = [path], [name], [0]
        folder.relative = [os.path.basename(path)]
        return folder
    for rel in _walk(path):
        shown = os.path.join(name, rel)
        if is_picture(rel):
            folder.files.append(os.path.join(path, rel))
            folder.shown.append(shown)
            folder.relative.append(rel)
            folder.labels.append(0)
        else:
            folder.skipped.append(shown)
    if not folder.files:
        raise DataError.in_file(name, f"the folder has no pictures ({', '.join(EXTENSIONS)})")
    return folder


def read_picture(path: str, shown: str) -> tuple[bytes, tuple[int, int]]:
    """The file's bytes and (height, width), after decoding it whole with Pillow; a DataError
    naming the file when it is not a readable PNG, JPEG, BMP or GIF."""
    from PIL import Image, UnidentifiedImageError

    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise DataError.in_file(shown, f"cannot read it: {exc.strerror}") from None
    try:
        with Image.open(io.BytesIO(data)) as picture:
            kind = picture.format
            picture.load()  # decodes every pixel: a truncated file fails here
            width, height = picture.size
    except UnidentifiedImageError:
        raise DataError.in_file(shown, "not a picture: the contents are not PNG, JPEG, BMP or "
                                "GIF" + (" (the file is empty)" if not data else "")) from None
    except Image.DecompressionBombError as exc:
        raise DataError.in_file(shown, f"refused: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:  # what Pillow raises for broken files
        raise DataError.in_file(shown, f"cannot decode the picture: {exc}") from None
    if kind not in FORMATS:
        raise DataError.in_file(shown, f"is a {kind} picture; nntrain reads PNG, JPEG, BMP and "
                                "GIF (what TensorFlow decodes)")
    return data, (height, width)


@dataclass
class ImageRows:
    """Stands in for one split's x (or, with ``target``, its y) while the pictures stay on
    disk: len() and .shape work, and ``pipeline`` reads them in batches."""

    files: list[str]
    labels: np.ndarray  # int64 class index of each file
    size: tuple[int, int]  # (height, width) the model takes
    channels: int
    resize: bool  # resize to size (data.image_size), or every picture has it already
    target: bool = False
    summary: np.ndarray = field(default_factory=lambda: np.zeros(0))  # every class index
    distinct: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.files)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self),) if self.target else (len(self), *self.size, self.channels)

    def batch_rows(self, rows: int) -> int:
        """``rows`` pictures per batch, or as many as BATCH_BYTES of pixels hold if fewer (at
        least one)."""
        picture = self.size[0] * self.size[1] * self.channels * 4
        return max(1, min(rows, BATCH_BYTES // picture))

    def pipeline(self, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                 encoding: tuple[str, int | None] | None = None) -> Any:
        """Batches of (pixels, encoded class) read from disk. Shuffled (with ``seed``) over the
        whole list of paths, which is small: the pixels are read only as batches are made."""
        from nntrain.tf import import_tensorflow

        tf = import_tensorflow()  # quietly: on JAX too, tf.data reads the pictures

        bound_heap()
        task, n_classes = encoding or ("multiclass", None)

        def encode(label: Any) -> Any:
            if task == "onehot":
                return tf.one_hot(label, n_classes, dtype=tf.float32)
            if task in ("binary", "regression"):
                return tf.cast(label, tf.float32)
            return label

        data = tf.data.Dataset.from_tensor_slices(
            (tf.constant(self.files, tf.string), tf.constant(self.labels, tf.int64)))
        if shuffle:
            # A new pipeline is made for every epoch, with that epoch's seed (loop.py).
            data = data.shuffle(max(len(self), 1), seed=seed, reshuffle_each_iteration=False)
        decode = decoder(self.size, self.channels, self.resize)
        data = data.map(lambda path, label: (decode(path), encode(label)),
                        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        data = data.batch(batch_size).apply(
            tf.data.experimental.assert_cardinality(math.ceil(len(self) / batch_size)))
        # Two batches ahead, not AUTOTUNE: autotuning grows the buffer over a long pass, and
        # eval's batches of 1024 pictures are 48 MiB each at 64x64 RGB.
        return data.prefetch(PREFETCH)


def bound_heap() -> None:
    """Fix glibc's mmap threshold at MMAP_THRESHOLD for the rest of the process (see there);
    nothing where the C library is not glibc."""
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): their allocators differ
        return
    mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def decoder(size: tuple[int, int], channels: int, resize: bool) -> Any:
    """path -> float32 pixels (height, width, channels), 0-255, as TensorFlow decodes them.

    Every format is decoded to RGB first (TensorFlow cannot decode a BMP to one channel) and
    made grayscale with tf.image.rgb_to_grayscale, so a picture gives the same pixels in every
    format. Resizing is bilinear and does not keep the aspect ratio (Keras's default).
    """
    from nntrain.tf import import_tensorflow

    tf = import_tensorflow()

    def decode(path: Any) -> Any:
        picture = tf.io.decode_image(tf.io.read_file(path), channels=3,
                                     expand_animations=False)  # a GIF's first frame
        picture = tf.cast(picture, tf.float32)
        if channels == 1:
            picture = tf.image.rgb_to_grayscale(picture)
        if resize:
            picture = tf.image.resize(picture, size)
        return tf.ensure_shape(picture, [*size, channels])

    return decode


def check_pictures(folder: Folder, size: tuple[int, int] | None, resize: bool,
                   why: str) -> tuple[str, tuple[int, int], int]:
    """Read every picture once (read_picture): (sha256 of the paths inside the folder and the
    bytes, the size the first
    one has, how many differ from ``size``). Without ``resize``, a picture of another size
    than ``size`` (or the first one's) is an error; ``why`` says how to fix it."""
    h = hashlib.sha256()
    first: tuple[int, int] | None = None
    first_name = ""
    other = 0
    for path, shown, relative in zip(folder.files, folder.shown, folder.relative):
        data, got = read_picture(path, shown)
        h.update(f"{relative}\0{len(data)}\0".encode())
        h.update(data)
        if first is None:
            first, first_name = got, shown
        want = size or first
        if got != want:
            if not resize:
                where = f"the model takes {_hw(want)}" if size else f"{first_name} is {_hw(want)}"
                raise DataError.in_file(shown, f"is {_hw(got)} (height x width) but {where}; "
                                        f"{why}")
            other += 1
    return "sha256:" + h.hexdigest(), first or (0, 0), other


def _hw(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


@dataclass
class Pictures:
    """A class folder tree, checked: what dataset.py splits and serves as ImageRows."""

    folder: Folder
    labels: np.ndarray  # int64 class index of each picture
    fingerprint: str
    size: tuple[int, int]
    channels: int
    resize: bool
    source: str  # for the manifest and the progress line
    notes: list[str]

    def rows(self, index: list[int]) -> tuple[ImageRows, ImageRows]:
        """(x, y) stand-ins for the pictures at ``index``."""
        at = np.asarray(index, dtype=np.int64)
        common = dict(files=[self.folder.files[i] for i in at], labels=self.labels[at],
                      size=self.size, channels=self.channels, resize=self.resize,
                      summary=self.labels, distinct=np.arange(len(self.folder.classes)))
        return ImageRows(**common), ImageRows(**common, target=True)


def read_pictures(cfg: ImageData, path: str, *, classification: bool = True) -> Pictures:
    """The class folders at ``path`` (cfg.path, resolved), every picture checked once."""
    if not classification:
        raise ConfigError.at(("training", "loss"), "pictures are labelled by their class "
                             "folder, so they need a classification loss, e.g. "
                             "sparse_categorical_crossentropy")
    folder = scan_classes(path, cfg.path)
    if len(folder.classes) < 2:
        raise DataError.in_file(cfg.path, f"has one class folder only ({folder.classes[0]}); "
                                "a classifier needs at least two")
    size = tuple(cfg.image_size) if cfg.image_size is not None else None
    fingerprint, first, resized = check_pictures(
        folder, size, size is not None,
        "every picture must have the same size, or set data.image_size: [HEIGHT, WIDTH] to "
        "resize them all")
    size = size or first
    labels = np.asarray(folder.labels, dtype=np.int64)
    notes = [note for note in [folder.skipped_note()] if note]
    if resized:
        notes.append(f"resized {resized} of {len(labels)} pictures to {_hw(size)} "
                     "(data.image_size)")
    source = (f"{cfg.path} ({len(labels)} pictures, {len(folder.classes)} classes, "
              f"{_hw(size)} {cfg.color_mode})")
    return Pictures(folder, labels, fingerprint, size, CHANNELS[cfg.color_mode],
                    cfg.image_size is not None, source, notes)


def is_image_dataset(ds: Any) -> bool:
    return isinstance(ds.x_train, ImageRows)
