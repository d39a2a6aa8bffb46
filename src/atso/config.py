"""One typed, validated configuration: a YAML file plus ``--set key=value`` overrides."""

from __future__ import annotations

import builtins
import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from atso.errors import AtsoError

IdPrefixes = list[str]  # module-level alias: SourceConfig has a field named ``list``


def _not_a_boolean(value: Any) -> Any:
    """YAML's ``true`` is Python's 1: refuse it where a number is expected, instead of training 1 iteration."""
    if isinstance(value, bool) or (isinstance(value, (list, tuple)) and any(isinstance(v, bool) for v in value)):
        raise ValueError(f"{str(value).lower()} is a boolean, not a number; give a number")
    return value


Int = Annotated[int, BeforeValidator(_not_a_boolean)]
Float = Annotated[float, BeforeValidator(_not_a_boolean)]
MAX_INPUT_SIDE = 4096  # a larger crop than any dataset atso targets; 100000^2 would exhaust memory first


class _Section(BaseModel):
    # Floats are finite: '.inf' as a learning rate would otherwise pass 'gt=0' and stop later as a NaN loss.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class SourceConfig(_Section):
    """Where samples come from: a CamVid-style split, an image folder (+ mask folder), or a list file."""

    root: Path | None = Field(default=None, description="dataset root of a CamVid or Cityscapes layout")
    layout: Literal["camvid", "cityscapes", "decathlon"] = Field(
        default="camvid",
        description=(
            "with root + split: camvid (SPLIT/, SPLITannot/), cityscapes (leftImg8bit/SPLIT/CITY, gtFine/...) "
            "or decathlon (root/dataset.json; split training or test)"
        ),
    )
    split: str | None = Field(default=None, description="split name under root, e.g. train, val, test; training for decathlon")
    images: Path | None = Field(default=None, description="folder of images")
    masks: Path | None = Field(default=None, description="folder of masks with the images' stems")
    mask_suffix: str = Field(default="", description="appended to an image's stem to name its mask")
    list: Path | None = Field(default=None, description="list file: 'image [mask]' per line")
    description: str | None = Field(
        default=None,
        description="this source's own dataset description, mapping its mask values onto the run's classes",
    )
    include: IdPrefixes = Field(default_factory=builtins.list, description="keep only sample ids starting with these")
    exclude: IdPrefixes = Field(default_factory=builtins.list, description="drop sample ids starting with these")

    @model_validator(mode="after")
    def _one_layout(self) -> "SourceConfig":
        layouts = [self.split is not None or self.root is not None, self.images is not None, self.list is not None]
        if sum(layouts) != 1:
            raise ValueError("give exactly one of: root + split (CamVid layout), images (+ masks), list")
        if (self.root is None) != (self.split is None):
            raise ValueError("root and split go together (root/SPLIT and root/SPLITannot)")
        if self.masks is not None and self.images is None:
            raise ValueError("masks needs images")
        if self.layout == "decathlon" and self.split not in (None, "training", "test"):
            raise ValueError(f"decathlon split must be training or test, got '{self.split}'")
        return self


VIEWS = ("axial", "coronal", "sagittal")


class VolumeConfig(_Section):
    """How 3D volumes become 2D slices and back (used when ``data.kind`` is ``volume``)."""

    views: list[Literal["axial", "coronal", "sagittal"]] = Field(
        default_factory=lambda: list(VIEWS), description="views to slice along, one 2D network each"
    )
    shared_network: bool = Field(default=False, description="one network for all views instead of one per view")
    context: Int = Field(default=0, ge=0, le=8, description="neighbouring slices on each side, as extra channels")
    empty_ratio: Float = Field(default=0.25, ge=0, le=1, description="share of background-only slices kept in training")
    intensity: Literal["ct", "zscore", "none"] = Field(
        default="zscore", description="ct: clip to window and scale to [0, 1]; zscore: per volume (MRI); none: as stored"
    )
    window: tuple[Float, Float] = Field(default=(-100.0, 240.0), description="Hounsfield window for intensity: ct")
    slice_spacing: Float | None = Field(
        default=None, gt=0, description="resample the long axis (2) to this spacing before slicing; outputs go back"
    )
    fusion: Literal["majority", "mean"] = Field(
        default="majority", description="how the views' predictions merge: majority vote or mean probability"
    )

    @field_validator("views")
    @classmethod
    def _distinct_views(cls, views: list[str]) -> list[str]:
        if not views or len(set(views)) != len(views):
            raise ValueError(f"{views}: list each view once, e.g. [axial, coronal, sagittal]")
        return views


class DataConfig(_Section):
    """Which samples are labeled (S), reference (R), test (E), and the size networks see."""

    description: str = Field(default="camvid", description="built-in dataset description or a YAML file")
    kind: Literal["image", "volume"] = Field(default="image", description="2D images, or 3D volumes (NIfTI)")
    volume: VolumeConfig = Field(default_factory=VolumeConfig, description="slicing and fusion, for kind: volume")
    train: SourceConfig = Field(description="samples split into the labeled set S and the reference set R")
    test: SourceConfig | list[SourceConfig] | None = Field(
        default=None, description="held-out samples scored after each generation: one source or a list (several clips)"
    )
    unlabeled: list[SourceConfig] = Field(default_factory=list, description="extra reference samples, no masks")
    labeled_count: Int | None = Field(default=None, ge=1)
    labeled_fraction: Float | None = Field(default=None, gt=0, le=1)
    labeled_list: Path | None = Field(default=None, description="list file naming the labeled samples")
    split_seed: Int = 0
    input_size: tuple[Int, Int] = Field(
        default=(96, 128), description="(height, width) networks see; for volumes, every slice is resized to it"
    )

    @model_validator(mode="after")
    def _one_labeled_rule(self) -> "DataConfig":
        rules = [self.labeled_count is not None, self.labeled_fraction is not None, self.labeled_list is not None]
        if sum(rules) > 1:
            raise ValueError("give at most one of labeled_count, labeled_fraction, labeled_list")
        return self

    @field_validator("input_size")
    @classmethod
    def _input_size_in_range(cls, size: tuple[int, int]) -> tuple[int, int]:
        return check_input_size(size)


def check_input_size(size: tuple[int, int] | list[int], key: str = "") -> tuple[int, int]:
    """An (height, width) between 16 and :data:`MAX_INPUT_SIDE` pixels each way, or an error saying so.

    Raises:
        ValueError: with ``key`` empty (pydantic adds the key); AtsoError naming ``key`` otherwise.
    """
    lead = f"{key}: " if key else ""
    problem = None
    if min(size) < 16:
        problem = "is too small; give at least 16 pixels each way, e.g. [96, 128]"
    elif max(size) > MAX_INPUT_SIDE:
        problem = f"is too large; give at most {MAX_INPUT_SIDE} pixels each way (the crop must fit in memory)"
    if problem is None:
        return (int(size[0]), int(size[1]))
    message = f"{lead}{list(size)} {problem}"
    raise AtsoError(message) if key else ValueError(message)


class ModelConfig(_Section):
    """A network from the registry (``atso.models.available_models()``) and its options."""

    name: str = "small_unet"
    options: dict[str, Any] = Field(default_factory=dict)
    pretrained: Path | None = Field(
        default=None, description="a model.pt of an earlier atso run that M0 starts from (fine-tuning), instead of from scratch"
    )


class StrongAugmentationConfig(_Section):
    """Students' strong view of pseudo-labeled samples; M0 and ground-truth samples keep the weak pipeline.

    Images get colour jitter, grayscale and blur; volume slices (MRI, CT) get intensity gain, bias,
    gamma and noise. CutMix between pseudo-labeled samples is ``train.mix``. Without this perturbation a
    student fed its teacher's labels on the teacher's own inputs learns to copy them (lazy mimicking).
    """

    enabled: bool = Field(default=True, description="perturb pseudo-labeled samples of students")
    jitter: Float = Field(default=0.5, ge=0, le=1, description="images: brightness/contrast/saturation in [1-j, 1+j], hue +-j/2")
    jitter_probability: Float = Field(default=0.8, ge=0, le=1, description="images: chance of colour jitter")
    grayscale_probability: Float = Field(default=0.2, ge=0, le=1, description="images: chance of grayscale")
    blur_probability: Float = Field(default=0.5, ge=0, le=1, description="images: chance of a Gaussian blur")
    gain: Float = Field(default=0.25, ge=0, lt=1, description="slices: intensity factor in [1-g, 1+g]")
    bias: Float = Field(default=0.25, ge=0, description="slices: intensity offset in [-b, b] standard deviations")
    gamma: tuple[Float, Float] = Field(default=(0.7, 1.5), description="slices: power of the [0, 1]-rescaled slice")
    noise: Float = Field(default=0.1, ge=0, description="slices: Gaussian noise of up to this many standard deviations")
    intensity_probability: Float = Field(default=0.8, ge=0, le=1, description="slices: chance of each intensity change")

    @model_validator(mode="after")
    def _check_gamma(self) -> "StrongAugmentationConfig":
        if not 0 < self.gamma[0] <= self.gamma[1]:
            raise ValueError("gamma must be (low, high) with 0 < low <= high, e.g. [0.7, 1.5]")
        return self


class TrainConfig(_Section):
    """The paper's recipe: SGD with momentum, poly learning rate, cross-entropy with ignore."""

    iterations: Int = Field(default=1000, ge=1, description="iterations for M0 (from scratch)")
    student_iterations: Int | None = Field(default=None, ge=1, description="iterations per student; default: iterations")
    batch_size: Int = Field(default=8, ge=1)
    lr: Float = Field(default=0.01, gt=0)
    student_lr: Float | None = Field(default=None, gt=0, description="learning rate for students; default: lr")
    momentum: Float = Field(default=0.9, ge=0, lt=1)
    weight_decay: Float = Field(default=1e-4, ge=0)
    poly_power: Float = Field(default=0.9, ge=0)
    scale_range: tuple[Float, Float] = Field(default=(0.75, 1.5), description="random rescale before the crop")
    hflip: bool = True
    blur_probability: Float = Field(default=0.0, ge=0, le=1)
    # A noisier student than its teacher (Noisy Student): students may rescale and blur more than M0.
    student_scale_range: tuple[Float, Float] | None = Field(default=None, description="students' rescale range; default: scale_range")
    student_blur_probability: Float | None = Field(default=None, ge=0, le=1, description="students' blur probability; default: blur_probability")
    seed: Int = 0
    checkpoint_every: Int = Field(default=100, ge=1)
    mix: Literal["none", "cutmix", "classmix"] = Field(
        default="cutmix", description="students: paste a box (cutmix) or half the classes (classmix) between pseudo-labeled samples"
    )
    mix_probability: Float = Field(default=0.5, ge=0, le=1, description="students: chance that a pseudo-labeled sample is mixed")
    strong: StrongAugmentationConfig = Field(
        default_factory=StrongAugmentationConfig, description="students: the strong view of pseudo-labeled samples"
    )
    labeled_share: Float | None = Field(
        default=0.5, gt=0, lt=1,
        description="students: share of each batch drawn from S, the rest from pseudo-labels; null pools S and R",
    )

    @model_validator(mode="after")
    def _check_scale(self) -> "TrainConfig":
        for name in ("scale_range", "student_scale_range"):
            value = getattr(self, name)
            if value is not None and not 0 < value[0] <= value[1]:
                raise ValueError(f"{name} must be (low, high) with 0 < low <= high")
        return self

    def augmentation(self, student: bool) -> tuple[tuple[float, float], float]:
        """The rescale range and blur probability of M0 (``student`` False) or of a student."""
        if not student:
            return self.scale_range, self.blur_probability
        scale = self.student_scale_range if self.student_scale_range is not None else self.scale_range
        blur = self.student_blur_probability if self.student_blur_probability is not None else self.blur_probability
        return scale, blur


def _registered_strategies() -> tuple[str, ...]:
    from atso.strategies.registry import strategy_names  # the one list of strategies (plans sit below config)

    return strategy_names()


class TeacherStudentConfig(_Section):
    """Which strategy, how many generations and reference folds, and how pseudo-labels are made."""

    strategy: str = Field(default="atso", description="a registered strategy (atso.strategies.registry)")
    generations: Int = Field(default=3, ge=0)
    folds: Int = Field(default=2, ge=2)
    fold_groups: Literal["sample", "sequence", "blocks"] = Field(
        default="sample",
        description=(
            "what the fold split keeps together: each sample (a volume is its own group), each sequence "
            "(the id up to fold_separator), or blocks of fold_block_size consecutive frames of a sequence"
        ),
    )
    fold_block_size: Int = Field(default=20, ge=1, description="frames per block, with fold_groups: blocks")
    fold_separator: str = Field(default="_", min_length=1, description="ends a sequence name in a sample id (0016E5_07959)")
    confidence_threshold: Float | None = Field(default=None, ge=0, le=1)
    class_balanced_keep: Float | None = Field(
        default=None, gt=0, le=1,
        description="keep each class's most confident share of pseudo-labeled pixels, ignore the rest (class-balanced)",
    )
    label_flip: bool = Field(default=False, description="teachers label with the mean of the image and its mirror image")
    final_labels: Literal["cross", "last"] = Field(
        default="cross",
        description="ATSO final model: 'cross' = folds relabeled by the last students; 'last' = the labels they trained on",
    )
    pseudo_labels: Literal["full", "super"] = Field(
        default="full", description="pseudo-labels of full classes, or of the description's superclasses"
    )
    super_to_full: bool = Field(default=False, description="after super-class generations, fine-tune on full-class labels")
    compare_strategies: list[str] = Field(
        default_factory=lambda: list(_registered_strategies()), description="what 'atso compare' runs"
    )
    compare_pseudo_labels: list[Literal["full", "super"]] = Field(
        default_factory=lambda: ["full"], description="pseudo-label granularities 'atso compare' runs"
    )

    @field_validator("strategy", "compare_strategies")
    @classmethod
    def _registered(cls, value: str | list[str]) -> str | list[str]:
        names = _registered_strategies()
        for name in [value] if isinstance(value, str) else value:
            if name not in names:
                raise ValueError(f"Input should be {', '.join(repr(n) for n in names[:-1])} or {names[-1]!r}")
        return value

    @model_validator(mode="after")
    def _one_selection(self) -> "TeacherStudentConfig":
        if self.confidence_threshold is not None and self.class_balanced_keep is not None:
            raise ValueError("set confidence_threshold or class_balanced_keep, not both")
        return self


class EvaluationConfig(_Section):
    """Inference settings for labeling and scoring."""

    batch_size: Int = Field(default=8, ge=1)
    flip: bool = Field(default=False, description="average predictions with the horizontally flipped image")


class RuntimeConfig(_Section):
    """Where and how to run; changing these never invalidates a run directory."""

    device: str = Field(default="auto", description="auto, cpu, cuda, cuda:N")
    amp: bool = Field(default=True, description="mixed precision on CUDA")
    amp_dtype: Literal["bfloat16", "float16"] = Field(
        default="bfloat16", description="autocast type on CUDA; float16 adds a gradient scaler"
    )
    channels_last: bool = Field(default=False, description="NHWC memory format for the model and its inputs (GPUs)")
    cudnn_benchmark: bool = Field(default=False, description="let cuDNN time convolution algorithms (fixed input sizes)")
    num_workers: Int = Field(default=0, ge=0, description="data-loader processes per training or inference job")
    prefetch_factor: Int = Field(default=2, ge=1, description="batches each data-loader process loads ahead")
    workers: Int = Field(default=1, ge=1, description="jobs of a run that may run at once, each in its own process")
    devices: list[str] = Field(
        default_factory=list, description="run ready jobs at once, one per listed device, e.g. [cuda:0, cuda:1]"
    )
    deterministic: bool = Field(
        default=False, description="deterministic GPU kernels (slower); the CPU is deterministic without it"
    )
    quiet: bool = Field(default=False, description="no progress bars")
    tensorboard: bool = Field(
        default=False, description="write loss, learning rate and @R/@E to RUN_DIR/tensorboard (pip install tensorboard)"
    )

    @field_validator("device")
    @classmethod
    def _known_device(cls, device: str) -> str:
        if device != "auto" and not is_device_name(device):
            raise ValueError(f"'{device}' is not a device; give auto, cpu, cuda, cuda:N or mps")
        return device

    @field_validator("devices")
    @classmethod
    def _known_devices(cls, devices: list[str]) -> list[str]:
        for device in devices:
            if device != "cpu" and not (device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())):
                raise ValueError(f"'{device}' is not a device; give cpu, cuda or cuda:N, e.g. [cuda:0, cuda:1]")
        return devices

    @model_validator(mode="after")
    def _devices_or_workers(self) -> "RuntimeConfig":
        if self.devices and self.workers > 1:
            raise ValueError("give devices (one job per listed device) or workers (jobs on runtime.device), not both")
        return self


def is_device_name(name: str) -> bool:
    """Whether ``name`` is a device atso can run on somewhere: cpu, cuda, cuda:N or mps."""
    return name in ("cpu", "cuda", "mps") or (name.startswith("cuda:") and name[5:].isdigit())


def check_device(name: str, key: str) -> str:
    """Refuse a device that is not a device, or that this machine lacks, naming ``key`` (``--device``).

    Checked when a command starts, not when a config is read, so a GPU run's config stays readable
    (``atso report``) on a machine without one.

    Raises:
        AtsoError: e.g. ``tpu``, ``gpu``, ``cuda`` without CUDA, ``cuda:3`` on a 2-GPU machine.
    """
    import torch

    if name == "auto":
        return name
    if not is_device_name(name):
        raise AtsoError(f"{key}: '{name}' is not a device; give auto, cpu, cuda, cuda:N or mps")
    if name.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(name[5:]) if ":" in name else 0
        if index >= count:
            found = f"{count} CUDA device(s) found" if count else "CUDA is not available"
            raise AtsoError(f"{key}: '{name}' asked for but {found}; use auto, cpu{', or cuda:0' if count else ''}")
    if name == "mps" and not torch.backends.mps.is_available():
        raise AtsoError(f"{key}: 'mps' asked for but MPS is not available; use auto or cpu")
    return name


class Config(_Section):
    """Everything a run needs; saved as ``config.yaml`` in every run directory."""

    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    teacher_student: TeacherStudentConfig = Field(default_factory=TeacherStudentConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)

    def to_dict(self) -> dict[str, Any]:
        """A plain, YAML-safe dict of the resolved config."""
        return self.model_dump(mode="json")

    def fingerprint(self) -> str:
        """A hash of everything that changes results (all but ``runtime``)."""
        data = self.to_dict()
        data.pop("runtime", None)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _describe_error(exc: ValidationError, source: str) -> AtsoError:
    errors = exc.errors()
    first = errors[0]
    # A field that takes one of several shapes (``data.test``: a source or a list) tags its errors
    # with the shape tried, e.g. 'function-after[_one_layout(), SourceConfig]'. The deepest error is
    # the shape the user meant (a list item's bad key, not "not a mapping"); the key is without the tag.
    tagged = [error for error in errors if any(_is_shape_tag(part) for part in error["loc"])]
    if first in tagged:
        first = max(tagged, key=lambda error: len(error["loc"]))
    loc = tuple(part for part in first["loc"] if not _is_shape_tag(part))
    first = {**first, "loc": loc}
    key = ".".join(str(part) for part in loc)
    if first["type"] == "extra_forbidden":
        parent = _section_for(first["loc"][:-1])
        allowed = ", ".join(parent.model_fields) if parent is not None else "see the docs"
        return AtsoError(f"{source}: unknown key '{key}'; allowed keys here: {allowed}")
    if first["type"] == "missing":
        return AtsoError(f"{source}: missing key '{key}'")
    message = first["msg"].replace("Value error, ", "")
    if first["type"] == "finite_number":
        message += f", not {first['input']}; .inf and .nan are not settings"
    where = f"'{key}'" if key else "config"
    return AtsoError(f"{source}: {where}: {message}")


def _is_shape_tag(part: Any) -> bool:
    return isinstance(part, str) and ("[" in part or part == "SourceConfig")


def _section_for(loc: tuple) -> type[BaseModel] | None:
    model: type[BaseModel] = Config
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        for candidate in candidates:
            inner = [candidate, *getattr(candidate, "__args__", ())]
            found = next((c for c in inner if isinstance(c, type) and issubclass(c, BaseModel)), None)
            if found is not None:
                model = found
                break
        else:
            return None
    return model


class DuplicateKeyError(yaml.YAMLError):
    """A mapping names one key twice; PyYAML would silently keep the last (a whole section lost)."""

    def __init__(self, key: Any, line: int) -> None:
        super().__init__(f"duplicate key '{key}' (line {line})")
        self.key, self.line = key, line


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader (plain data, no code), with duplicate keys an error."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: SafeLoader says so itself
                continue
            if duplicate and key != "<<":
                raise DuplicateKeyError(key, key_node.start_mark.line + 1)
        return super().construct_mapping(node, deep=deep)


def read_text_file(path: str | Path, what: str) -> str:
    """A text file as UTF-8, or one line naming the file and the fix (a Latin-1 list file, a binary file).

    Raises:
        AtsoError: the file cannot be read or is not UTF-8.
    """
    try:
        return Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AtsoError(
            f"{path}: {what} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); save it as UTF-8"
        ) from exc
    except OSError as exc:
        raise AtsoError(f"{path}: cannot read {what} ({exc.strerror or exc})") from exc


def read_yaml(path: str | Path, what: str = "config", text: str | None = None) -> Any:
    """Parse a UTF-8 YAML file with plain data only and unique keys.

    Raises:
        AtsoError: not UTF-8, not YAML, or a key given twice (the line names the key and its line).
    """
    text = read_text_file(path, what) if text is None else text
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)
    except DuplicateKeyError as exc:
        raise AtsoError(
            f"{path}: duplicate key '{exc.key}' at line {exc.line}; give each key once (the second would replace the first)"
        ) from exc
    except yaml.YAMLError as exc:
        raise AtsoError(f"{path}: not valid YAML ({exc.__class__.__name__}); check indentation and quoting") from exc


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into the key path and a YAML-parsed value."""
    if "=" not in text:
        raise AtsoError(f"--set {text}: expected key=value, e.g. --set train.iterations=200")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise AtsoError(f"--set {text}: empty key")
    try:
        value = yaml.load(raw, Loader=UniqueKeyLoader) if raw.strip() else ""
    except DuplicateKeyError as exc:
        raise AtsoError(f"--set {text}: duplicate key '{exc.key}'; give each key once") from exc
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set`` overrides to a raw config mapping; a number indexes a list (``data.unlabeled.0.root``)."""
    for text in overrides:
        path, value = parse_override(text)
        node: Any = data
        for depth, part in enumerate(path):
            last = depth == len(path) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise AtsoError(f"--set {text}: '{part}' is not an index of that list (0..{len(node) - 1})")
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
                continue
            if not isinstance(node, dict):
                raise AtsoError(f"--set {text}: '{path[depth - 1]}' is not a section")
            if last:
                node[part] = value
            else:
                if node.get(part) is None:
                    node[part] = {}
                node = node[part]
    return data


def _resolve_paths(data: dict[str, Any], base_dir: Path) -> None:
    """Make relative paths in the data section relative to the config file, as users expect."""
    section = data.get("data")
    if not isinstance(section, dict):
        return

    def fix(mapping: Any, keys: tuple[str, ...]) -> None:
        if not isinstance(mapping, dict):
            return
        for key in keys:
            value = mapping.get(key)
            if isinstance(value, str) and value and not Path(value).is_absolute():
                mapping[key] = str((base_dir / value).resolve())

    source_keys = ("root", "images", "masks", "list")
    test = section.get("test")
    tests = test if isinstance(test, list) else [test]
    sources = [section.get("train"), *tests, *(section.get("unlabeled") or [])]
    for source in sources:
        fix(source, source_keys)
        if isinstance(source, dict) and str(source.get("description", "")).endswith((".yaml", ".yml")):
            fix(source, ("description",))
    fix(section, ("labeled_list",))
    description = section.get("description")
    if isinstance(description, str) and description.endswith((".yaml", ".yml")):
        fix(section, ("description",))
    model = data.get("model")
    if isinstance(model, dict) and isinstance(model.get("options"), dict):
        fix(model["options"], ("pretrained_backbone",))
    fix(model, ("pretrained",))


def config_from_dict(data: dict[str, Any], source: str = "config", base_dir: Path | None = None) -> Config:
    """Validate a raw mapping into a :class:`Config`; relative paths resolve against ``base_dir``."""
    if not isinstance(data, dict):
        raise AtsoError(f"{source}: expected a mapping of sections (data, model, train, ...)")
    data = json.loads(json.dumps(data, default=str))
    _resolve_paths(data, base_dir or Path.cwd())
    try:
        return Config(**data)
    except ValidationError as exc:
        raise _describe_error(exc, source) from exc


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read a YAML config, apply ``--set`` overrides and validate.

    Raises:
        AtsoError: missing file, bad YAML, unknown key or bad value (the message names the key).
    """
    path = Path(path)
    if not path.is_file():
        raise AtsoError(f"{path}: config file not found")
    data = read_yaml(path) or {}
    if not isinstance(data, dict):
        raise AtsoError(f"{path}: expected a mapping of sections (data, model, train, ...)")
    data = apply_overrides(data, overrides or [])
    return config_from_dict(data, source=str(path), base_dir=path.parent.resolve())


def dump_config(config: Config) -> str:
    """The resolved config as YAML text."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
