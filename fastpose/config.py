"""RunConfig: the one typed configuration that flows CLI/TOML -> data, model, loss, trainer -> journal.

Torch-free. Every field has a comment; unknown keys are an error (a typo must not silently become a default).
A RunConfig round-trips through ``to_dict``/``from_dict`` (JSON in the journal, hyper-parameters in every
checkpoint), and ``validate`` raises ``ConfigError`` with a one-line message naming the bad value.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from fastpose.errors import FastposeError
from fastpose.metrics import DEFAULT_MONITOR
from fastpose.sizes import format_image_size, image_hw, parse_image_size

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")

DATASETS = ("synthetic", "nocs")
BACKBONES = ("resnet18", "resnet34", "resnet50", "resnext50_32x4d")
LOSSES = ("mse", "qloss", "pw-qloss", "geodesic", "chordal", "qloss-neglog")
DEPTH_HEADS = ("branch", "shared")  # model.depth_head
# How NOCS images are brought to data.image_size (fastpose.pose.camera.FIT_MODES, kept torch-free here; a test
# asserts the two agree): resize (each axis scaled), crop (the largest centred region of the size's aspect,
# then resized), letterbox (scaled by one factor to fit, centred, padded).
FIT_MODES = ("resize", "crop", "letterbox")
# Config keys added after runs were first journaled: a config saved without one (journal, checkpoint) describes
# the run as it was then, so RunConfig.from_saved fills in these values, not today's defaults (NOCS images
# were centre-cropped to the square before data.fit existed).
LEGACY_VALUES = {("model", "depth_head"): "shared", ("data", "fit"): "crop"}
REPRESENTATIONS = ("quaternion", "6d", "9d")  # model.rotation: the rotation head's representation
# Which loss fits which representation (fastpose.pose.losses.REPRESENTATIONS, kept torch-free here; a test
# asserts the two agree).
LOSS_REPRESENTATIONS = {"mse": ("quaternion",), "qloss": ("quaternion",), "pw-qloss": ("quaternion",),
                        "geodesic": ("quaternion", "6d", "9d"), "chordal": ("6d", "9d"),
                        "qloss-neglog": ("quaternion",)}
ROTATIONS = ("so3", "tabletop")
# The synthetic splits, each a seed offset from data.seed: training uses seed, validation seed + 1, the held-out
# test split seed + 2 (`fastpose eval --split test`), and the tuning split seed + 3, on which a sweep's [tune]
# stage chooses its hyper-parameters so that the split its final table is scored on never chose anything.
SPLIT_SEED_OFFSET = {"train": 0, "val": 1, "test": 2, "tune": 3}
VAL_SPLITS = ("val", "tune")
RENDER_DEVICES = ("auto", "loader", "accelerator")
PRECISIONS = ("32-true", "32", "16-mixed", "bf16-mixed", "64-true", "64")


class ConfigError(FastposeError, ValueError):
    """A configuration value is invalid; the message is one line, fit for the user."""


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid run name, else raise ConfigError (before anything is written)."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ConfigError(
            f"invalid run name {name!r}: use 1-100 characters from A-Z a-z 0-9 _ . -, "
            "starting with a letter or digit"
        )
    return name


SEED_MAX = 2**32 - 1  # seeds: numpy's legacy seeding and Lightning's seed_everything accept 0 .. 2**32 - 1
# The accepted range of every integer config key: (its option, lowest, highest), both ends included.
# check_type (every value a file, an option or a stored config sets) and RunConfig.validate check each, so a
# value from an option, a --config or sweep file, `train --from`, or a stored config is refused in one line
# before any run row or directory exists. The upper ends are where
# the value stops meaning a run and starts failing one: out of memory (image size, decoder width, a
# sampler's permutation of the training set), a process per worker, a TensorBoard panel per logged image.
INT_RANGES: dict[str, tuple[str, int, int]] = {
    "data.image_size": ("--image-size", 32, 4096),  # each side; a multiple of 32 (check_image_size)
    "data.train_size": ("--train-size", 1, 10**7),
    "data.val_size": ("--val-size", 1, 10**7),
    "data.max_objects": ("--max-objects", 1, 64),
    "data.num_workers": ("--num-workers", 0, 256),
    "data.seed": ("--data-seed", 0, SEED_MAX),
    "model.decoder_channels": ("--decoder-channels", 1, 4096),
    "train.epochs": ("--epochs", 1, 10**6),
    "train.batch_size": ("--batch-size", 1, 1 << 16),
    "train.seed": ("--seed", 0, SEED_MAX),
    "train.save_every": ("--save-every", 0, 10**6),
    "train.num_nodes": ("--num-nodes", 1, 4096),
    "train.log_images": ("--log-images", 0, 64),
    "train.threads": ("--threads", 0, 1024),
}


def check_int(option: str, value: Any, low: int, high: int, key: str | None = None) -> int:
    """``value`` if it is an integer in ``[low, high]``, else a one-line ConfigError naming ``option`` (and
    the config ``key``)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise ConfigError(f"{option} must be an integer from {low} to {high}"
                          + (f" ({key})" if key else "") + f", got {shown}")
    return value


IMAGE_SIZE_KEY = "data.image_size"
IMAGE_MULTIPLE = 32  # every side of data.image_size: the encoder's stride
SIZES_4_3 = ("128x96", "256x192", "512x384", "640x480")  # NOCS's aspect (640x480), multiples of 32


def check_image_size(value: Any, key: str = IMAGE_SIZE_KEY) -> int | str:
    """``data.image_size`` in its stored form, else a one-line ConfigError naming ``--image-size`` (and ``key``).

    An int is a square; text is ``"WIDTHxHEIGHT"`` or one number (``fastpose.sizes.parse_image_size``).
    Each side lies in ``INT_RANGES[key]`` and is a multiple of ``IMAGE_MULTIPLE``. Stored form: a square as
    the int (``64``, as every config before rectangles), a rectangle as ``"640x480"``."""
    option, low, high = INT_RANGES[key]
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise ConfigError(f"{option} must be WIDTHxHEIGHT or one number (config key {key!r}), "
                          f"got {type(value).__name__} {shown}")
    try:
        h, w = (value, value) if isinstance(value, int) else parse_image_size(value)
    except ValueError as exc:
        raise ConfigError(f"{option}: {exc} ({key})") from None
    if not (low <= h <= high and low <= w <= high):
        shown = str(value) if len(str(value)) <= 40 else str(value)[:37] + "..."
        raise ConfigError(f"{option} sides must be from {low} to {high} pixels ({key}), got {shown}")
    if h % IMAGE_MULTIPLE or w % IMAGE_MULTIPLE:
        raise ConfigError(f"{option} sides must be multiples of {IMAGE_MULTIPLE} ({key}), got "
                          f"{format_image_size((h, w))} (at NOCS's 4:3: {', '.join(SIZES_4_3)})")
    return h if h == w else format_image_size((h, w))


@dataclass
class DataConfig:
    dataset: str = "synthetic"  # synthetic (rendered on the fly, no files) | nocs (NOCS layout on disk)
    data_root: str | None = None  # NOCS root folder; required for dataset=nocs
    image_size: int | str = 64  # pixels: one number for a square, or "WIDTHxHEIGHT" ("640x480"); every side a
    #                             multiple of 32 (stored as the int for a square); DataConfig.image_hw is (H, W)
    fit: str = "resize"  # how NOCS images (640x480) are brought to image_size: resize | crop | letterbox
    #                      (FIT_MODES); synthetic images are rendered at image_size
    # Defaults size the Quickstart demo (`fastpose train --name DEMO`): under 3 minutes on a 2-core CPU.
    train_size: int = 1280  # synthetic training samples per epoch
    val_size: int = 128  # synthetic validation samples
    rotations: str = "tabletop"  # tabletop (upright, tilt, any yaw: the NOCS setting; the demo's default) | so3
    #                              (uniform over all rotations; the loss study passes it explicitly)
    max_objects: int = 3  # objects per synthetic image are drawn from 1..max_objects
    val_split: str = "val"  # the split validation (and so the best checkpoint) uses: val | tune (synthetic
    #                         only; a sweep's [tune] stage sets it, see SPLIT_SEED_OFFSET)
    num_workers: int = 0  # DataLoader worker processes
    render_device: str = "auto"  # where synthetic batches are ray-cast: loader (in the DataLoader: its workers,
    #                              or this process without) | accelerator (sampled in the loader, ray-cast on
    #                              the training device) | auto (accelerator, except loader on a CPU with
    #                              DataLoader workers);
    #                              the same images either way (fastpose/training/datamodule.py)
    seed: int = 0  # synthetic data seed (train uses it, validation seed+1); kept apart from train.seed so
    #                runs with different training seeds are compared on identical data

    @property
    def image_hw(self) -> tuple[int, int]:
        """``image_size`` as ``(height, width)``, what the datasets and the network take."""
        return image_hw(self.image_size) if isinstance(self.image_size, int) else parse_image_size(self.image_size)


@dataclass
class ModelConfig:
    backbone: str = "resnet18"  # encoder architecture (torchvision-compatible parameter names)
    weights: str | None = None  # path to a torchvision ImageNet state_dict file; None = from scratch
    decoder_channels: int = 64  # width of the FPN-style decoder
    rotation: str = "quaternion"  # rotation head: quaternion (4 channels per class) | 6d (two columns,
    #                               Gram-Schmidt) | 9d (a 3x3 matrix, SVD projection); see pose/rotations.py
    depth_head: str = "branch"  # log-depth from: branch (its own two 3x3 conv layers on the stride-4 decoder
    #                             features, as FastPoseCNN's separate decoders) | shared (one 1x1 channel of
    #                             the geometry head; every run before the branch; see pose/translation.py)


@dataclass
class LossConfig:
    name: str = "qloss"  # rotation term: mse | qloss | pw-qloss | geodesic | chordal | qloss-neglog
    #                      (chordal: 6d/9d only; geodesic: any; the others: quaternion only)
    eps: float = 1e-2  # eps in log(eps + 1 - |<q, q_hat>|)
    mask_weight: float = 1.0  # weight of the mask cross-entropy
    rot_weight: float = 0.3  # weight of the rotation term; < 1 lets the mask (which gates the rotation
    #                          metrics: only objects matched by mask IoU >= 0.5 count) learn first in the demo
    trans_weight: float = 0.1  # weight of the translation term (centre offsets + log-depth, L1); small, so
    #                            the mask (which gates every metric) still learns first in the demo
    size_weight: float = 0.1  # weight of the size term (log extents, L1)


@dataclass
class TrainConfig:
    epochs: int = 10  # training epochs. The demo's depth needs them: at 5 the median translation error was 4.9 cm
    #                   against the trivial baseline's 8.3 (the goal is half), at 8 it was 4.1 and 4.4 for
    #                   seeds 0 and 1, at 10 3.8 (docs/evaluation.md)
    batch_size: int = 16  # per device; small batches give the short demo more optimizer steps
    lr: float = 3e-3  # AdamW learning rate (short linear warm-up, then cosine to 0)
    weight_decay: float = 1e-4
    seed: int = 0  # seeds torch (weights init), data order and Lightning
    save_every: int = 0  # also keep a checkpoint every N epochs (0 = off)
    accelerator: str = "auto"  # passed to Lightning: auto (a GPU where there is one, else the CPU) | cpu | gpu | ...
    devices: str = "1"  # passed to Lightning: a count, a list "0,1", or "auto"
    strategy: str = "auto"  # passed to Lightning: auto | ddp | ddp_spawn | ...
    num_nodes: int = 1
    precision: str = "32-true"
    threads: int = 0  # CPU threads of torch (intra- and inter-op; OMP/MKL_NUM_THREADS for its workers): 0 = auto
    #                   ($OMP_NUM_THREADS when set, else the free CPUs, at most 4; fastpose/environment.py). The
    #                   count changes the numbers (float sums split differently): the journal records it
    limit_train_batches: float = 1.0  # fraction or count of batches per epoch (tests use small counts)
    limit_val_batches: float = 1.0
    log_images: int = 4  # validation samples drawn with pose axes into TensorBoard (0 = off)
    progress_bar: bool = True  # rich progress bar on stderr
    monitor: str = DEFAULT_MONITOR  # the primary metric: best checkpoint, journal headline, compare's lead;
    #                                 its direction comes from fastpose/metrics.py (README: "best")


@dataclass
class RunConfig:
    name: str = "RUN"  # the run's NAME, as in the label YY-MM-DD/HH-MM-NAME-DATASET-BACKBONE-WEIGHTS
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    # ----------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """Build from a (possibly partial) nested dict; unknown sections or keys raise ConfigError."""
        return _merge(cls(), data)

    @classmethod
    def from_saved(cls, data: dict[str, Any]) -> RunConfig:
        """A config fastpose itself saved (journal row, checkpoint): keys it predates take ``LEGACY_VALUES``."""
        data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
        for (section, key), value in LEGACY_VALUES.items():
            if isinstance(data.get(section), dict):
                data[section].setdefault(key, value)
        return cls.from_dict(data)

    def override(self, updates: dict[str, Any]) -> RunConfig:
        """A copy with ``updates`` (nested dict, or dotted keys like ``train.epochs``) applied."""
        nested: dict[str, Any] = {}
        for key, value in updates.items():
            parts = key.split(".")
            target = nested
            for part in parts[:-1]:
                target = target.setdefault(part, {})
            if isinstance(value, dict) and isinstance(target.get(parts[-1]), dict):
                target[parts[-1]].update(value)
            else:
                target[parts[-1]] = value
        return _merge(RunConfig.from_dict(self.to_dict()), nested)

    def flat(self) -> dict[str, Any]:
        """``{"train.epochs": 8, ...}``: what ``compare`` diffs."""
        out: dict[str, Any] = {}
        for key, value in self.to_dict().items():
            if isinstance(value, dict):
                out.update({f"{key}.{k}": v for k, v in value.items()})
            else:
                out[key] = value
        return out

    # ----------------------------------------------------------------- validation
    def validate(self) -> RunConfig:
        validate_name(self.name)
        d, m, l, t = self.data, self.model, self.loss, self.train
        _choice("dataset", d.dataset, DATASETS)
        _choice("backbone", m.backbone, BACKBONES)
        _choice("loss", l.name, LOSSES)
        _choice("rotation", m.rotation, REPRESENTATIONS)
        _choice("depth_head", m.depth_head, DEPTH_HEADS)
        if m.rotation not in LOSS_REPRESENTATIONS[l.name]:
            fits = [n for n, kinds in LOSS_REPRESENTATIONS.items() if m.rotation in kinds]
            raise ConfigError(f"--loss {l.name} does not fit --rotation {m.rotation}; with --rotation {m.rotation} "
                              f"use --loss {' | '.join(fits)}")
        _choice("rotations", d.rotations, ROTATIONS)
        _choice("val-split", d.val_split, VAL_SPLITS)
        if d.val_split != "val" and d.dataset != "synthetic":
            raise ConfigError(f"--val-split {d.val_split} exists for the synthetic dataset only; {d.dataset} has val")
        _choice("render-device", d.render_device, RENDER_DEVICES)
        if d.render_device == "accelerator" and d.dataset != "synthetic":
            raise ConfigError(f"--render-device accelerator renders synthetic data; --dataset {d.dataset} is read from disk")
        _choice("precision", str(t.precision), PRECISIONS)
        _choice("fit", d.fit, FIT_MODES)
        flat = self.flat()
        for key, (option, low, high) in INT_RANGES.items():
            if key == IMAGE_SIZE_KEY:
                check_image_size(flat[key], key)
            else:
                check_int(option, flat[key], low, high, key)
        for label, value in (("limit-train-batches", t.limit_train_batches), ("limit-val-batches", t.limit_val_batches)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"--{label} must be a fraction in (0, 1] or a batch count >= 1, got {value!r}")
        if not (t.lr > 0) or t.weight_decay < 0 or not (l.eps > 0):
            raise ConfigError(f"--lr and --eps must be > 0 (got lr={t.lr}, eps={l.eps})")
        if min(l.mask_weight, l.rot_weight, l.trans_weight, l.size_weight) < 0:
            raise ConfigError("loss weights must be >= 0")
        for label, value in (("lr", t.lr), ("weight-decay", t.weight_decay), ("eps", l.eps),
                             ("mask-weight", l.mask_weight), ("rot-weight", l.rot_weight),
                             ("trans-weight", l.trans_weight), ("size-weight", l.size_weight),
                             ("limit-train-batches", t.limit_train_batches),
                             ("limit-val-batches", t.limit_val_batches)):
            if not math.isfinite(value):
                raise ConfigError(f"--{label} must be a finite number, got {value!r}")
        check_devices(t.devices)
        for label, value in (("accelerator", t.accelerator), ("strategy", t.strategy)):
            if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value):
                raise ConfigError(f"--{label} {value!r}: a Lightning {label} name such as "
                                  + ("cpu, gpu or auto" if label == "accelerator" else "auto, ddp or ddp_spawn"))
        if not isinstance(t.monitor, str) or not re.fullmatch(r"val/[A-Za-z0-9_]+(/[a-z]+)?", t.monitor):
            raise ConfigError(f"--monitor must name a validation metric such as {DEFAULT_MONITOR!r}, got {t.monitor!r}")
        if d.dataset == "nocs":
            if not d.data_root:
                raise ConfigError("--dataset nocs needs --data-root PATH")
            if not Path(d.data_root).is_dir():
                raise ConfigError(f"--data-root {d.data_root!r} is not a directory")
        if m.weights is not None and not Path(m.weights).is_file():
            raise ConfigError(f"--weights {m.weights!r}: no such file")
        return self

    # ----------------------------------------------------------------- naming
    @property
    def weights_tag(self) -> str:
        if self.model.weights is None:
            return "scratch"
        stem = Path(self.model.weights).stem
        return "imagenet" if "imagenet" in stem.lower() or stem.startswith(self.model.backbone) else "custom"

    def label(self, now: datetime | None = None) -> str:
        """``YY-MM-DD/HH-MM-NAME-DATASET-BACKBONE-WEIGHTS``, the lab's run naming."""
        now = now or datetime.now()
        return (
            f"{now:%y-%m-%d}/{now:%H-%M}-{self.name}-{self.data.dataset.upper()}-"
            f"{self.model.backbone}-{self.weights_tag}"
        )


DEFAULTS: dict[str, Any] = RunConfig().flat()  # every key's default (``train --help`` shows them)

# Config keys that change only what a run displays, not what it trains (compare leaves them out).
DISPLAY_KEYS = ("train.progress_bar", "train.log_images")
# Keys that tell runs apart or change only what is displayed, never what is trained: left out wherever two
# configs are compared (compare's config diff, the notes of train --from and resume). The thread setting
# (0 = auto) is compared as the counts the runs used, in their recorded environment.
NOT_COMPARED = ("name", *DISPLAY_KEYS, "train.threads")


def toml_text(config: dict[str, Any]) -> str:
    """``config`` (``RunConfig.to_dict()``, or any nested dict of scalars) as TOML that ``load_toml`` reads
    back to the same values: top-level keys first, then one table per section. TOML has no null: a None is
    written as a comment (``# weights = none``), which reads back as the key's default, None."""
    top = [(k, v) for k, v in config.items() if not isinstance(v, dict)]
    out = [_toml_line(k, v) for k, v in top]
    for key, value in config.items():
        if isinstance(value, dict):
            out += ["", f"[{_toml_key(key)}]"] + [_toml_line(k, v) for k, v in value.items() if not isinstance(v, dict)]
            out += [line for k, v in value.items() if isinstance(v, dict)
                    for line in toml_text({f"{key}.{k}": v}).splitlines()]
    return "\n".join(out).strip("\n") + "\n"


def _toml_line(key: str, value: Any) -> str:
    if value is None:
        return f"# {_toml_key(key)} = none"
    return f"{_toml_key(key)} = {_toml_value(value)}"


def _toml_key(key: str) -> str:
    return ".".join(part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else _toml_string(part) for part in key.split("."))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "nan" if value != value else ("inf" if value > 0 else "-inf")
        text = repr(value)
        return text if any(c in text for c in ".en") else text + ".0"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return _toml_string(str(value))


def _toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    special = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
    out = []
    for ch in text:
        if ch in special:
            out.append(special[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def build_config(file: str | Path | None = None, updates: dict[str, Any] | None = None, *,
                 base: dict[str, Any] | None = None, require_name: bool = True) -> RunConfig:
    """Defaults, then ``base`` (another run's stored config: ``train --from``), then the TOML ``file``, then
    ``updates`` (dotted keys, e.g. the command-line options given).

    The run needs a name from ``base``, the file or the updates (unless ``require_name`` is False); the
    result is validated.
    """
    data = load_toml(file) if file is not None else {}
    config = RunConfig()
    if base is not None:
        try:
            config = RunConfig.from_saved(base)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (in the config of the --from run)") from None
    try:
        config = _merge(config, data)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (in {file})") from None
    config = config.override(updates or {})
    named = "name" in data or "name" in (updates or {}) or (base is not None and "name" in base)
    if require_name and not named:
        raise ConfigError('a run needs a name: pass --name NAME (or set name = "..." in the config file)')
    return config.validate()


CONFIG_FILE_LIMIT = 1 << 20  # bytes: a config or sweep file is a few KiB; more is not one
TOML_MAX_DEPTH = 16  # tables and arrays inside each other; a sweep file needs 6 (root, [sweep], an axis's
#                      list of variants, a variant, a dotted key in it, a list value)


def load_toml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """Read a TOML file a user named (``--config``, a sweep file): a regular file of at most
    ``CONFIG_FILE_LIMIT`` bytes (``fastpose.files.read_user_file``), UTF-8, valid TOML, nested at most
    ``TOML_MAX_DEPTH`` levels deep. Every refusal is a one-line ConfigError naming the file (a syntax error
    with its line and column)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    from fastpose.files import read_user_file

    path = Path(path)
    try:
        data = read_user_file(path, what, CONFIG_FILE_LIMIT)
    except FastposeError as exc:
        raise ConfigError(str(exc)) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {str(path)!r} is not UTF-8 text (byte {exc.start})") from None
    too_deep = ConfigError(f"{what} {str(path)!r} nests tables or arrays more than {TOML_MAX_DEPTH} levels deep")
    # Checked on the text first: the parser recurses once per nested array or inline table (RecursionError
    # past ~1000), and its time grows with the square of a dotted key's parts (10,000 parts: 3 s).
    if _text_depth(text) > TOML_MAX_DEPTH:
        raise too_deep
    try:
        result = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"malformed TOML in {path}: {exc}") from None
    if _depth(result) > TOML_MAX_DEPTH:  # a table header's parts and the arrays in it, together
        raise too_deep
    return result


# What the text scan skips: TOML's strings (multi-line and single-line, basic and literal) and comments.
_TOML_SKIP = re.compile("|".join([
    r'"""(?:\\.|[^\\])*?"{3,5}',  # multi-line basic string (it may end in one or two quotes of its own)
    r"'''.*?'{3,5}",  # multi-line literal string
    r'"(?:\\.|[^"\\\n])*"',  # basic string
    r"'[^'\n]*'",  # literal string
    r"#[^\n]*",  # comment
]), re.S)
# a.b.c (a quoted part reads S); starting only where a part can start, so that it scans in linear time
_TOML_DOTTED = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]+(?:[ \t]*\.[ \t]*[A-Za-z0-9_-]+)+")


def _text_depth(text: str) -> int:
    """An upper bound of how deep ``text`` (TOML) nests, from the text alone: 1 + the deepest nesting of
    brackets and braces, or the most parts of a dotted key (``a."b".c``: 3), strings and comments skipped."""
    bare = _TOML_SKIP.sub(lambda m: "" if m.group().startswith("#") else "S", text)
    deepest = level = 0
    for bracket in re.findall(r"[\[\]{}]", bare):
        level = level + 1 if bracket in "[{" else max(0, level - 1)
        deepest = max(deepest, level)
    parts = max((chain.count(".") + 1 for chain in _TOML_DOTTED.findall(bare)), default=1)
    return max(1 + deepest, parts)


def _depth(value: Any) -> int:
    """How many dicts and lists are nested in ``value`` (a scalar: 0), counted without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        elif not isinstance(item, list):
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in item if isinstance(child, (dict, list)))
    return deepest


def check_devices(value: str) -> str:
    """``--devices``: a count (``1``, ``-1`` = all), a list of indices (``0,1``), or ``auto``."""
    text = str(value).strip()
    if text == "auto" or re.fullmatch(r"-1|[1-9][0-9]{0,3}", text) or re.fullmatch(r"[0-9]{1,4}(,[0-9]{1,4})*,?", text):
        return text
    raise ConfigError(f"--devices {value!r}: a count like 2, a list like 0,1, -1 (all) or auto")


def _choice(label: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {label} {value!r}; choose one of: {', '.join(choices)}")


_TYPE_NAMES = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false"}


def check_type(key: str, value: Any, annotation: str) -> Any:
    """``value`` if it fits the field type ``annotation`` (``"float"``, ``"str | None"``, ...), else ConfigError.

    Typed like the dataclass says (``data.image_size``: ``check_image_size``, which also gives its stored
    form): ints for int fields (not bools; within ``INT_RANGES``), numbers for float
    fields (finite: no NaN or infinity anywhere in a config, which is stored as strict JSON), strings for str
    fields, and None only where the type admits it. Returns the value converted where it is lossless (an int for a float).
    """
    kinds = [part.strip() for part in annotation.split("|")]
    if key == IMAGE_SIZE_KEY and value is not None:
        return check_image_size(value, key)  # int or "WIDTHxHEIGHT", each side bounded; stored form
    if value is None:
        if "None" in kinds:
            return None
        raise ConfigError(f"config key {key!r} must be {_TYPE_NAMES.get(kinds[0], kinds[0])}, got no value")
    for kind in kinds:
        if kind == "bool" and isinstance(value, bool):
            return value
        if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
            if key in INT_RANGES:
                option, low, high = INT_RANGES[key]
                return check_int(option, value, low, high, key)
            if abs(value) > 2**53:
                raise ConfigError(f"config key {key!r} is out of range: {value}")
            return value
        if kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"config key {key!r} must be a finite number, got {value!r}")
            return float(value) if isinstance(value, int) and abs(value) <= 2**53 else value
        if kind == "str" and isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ConfigError(f"config key {key!r} is not valid UTF-8") from None
            if "\x00" in value or len(value) > 4096:
                raise ConfigError(f"config key {key!r}: a NUL character or more than 4096 characters")
            return value
    want = " or ".join(_TYPE_NAMES.get(k, k) for k in kinds if k != "None")
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    raise ConfigError(f"config key {key!r} must be {want}, got {type(value).__name__} {shown}")


def _merge(obj: Any, data: dict[str, Any], prefix: str = "") -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"config section {prefix.rstrip('.') or 'root'} must be a table")
    fields = {f.name: f for f in dataclasses.fields(obj)}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(
                f"unknown config key {prefix + key!r}; valid keys: {', '.join(prefix + k for k in fields)}"
            )
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            _merge(current, value, prefix=f"{prefix}{key}.")
        else:
            setattr(obj, key, check_type(prefix + key, value, str(fields[key].type)))
    return obj


# ----------------------------------------------------------------------------- stored configs as flat keys
def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"epochs": 8}}`` -> ``{"train.epochs": 8}`` (the keys ``RunConfig.flat`` uses)."""
    out: dict[str, Any] = {}
    for key, value in (config or {}).items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_changes(before: dict[str, Any], after: dict[str, Any], skip: tuple[str, ...] = NOT_COMPARED
                   ) -> list[tuple[str, Any, Any]]:
    """``[(key, before, after)]`` for every flattened key whose value differs (missing keys as None), the
    keys in ``skip`` aside (by default ``NOT_COMPARED``: the name and display options)."""
    a, b = flatten(before), flatten(after)
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if k not in skip and a.get(k) != b.get(k)]
