"""Training configuration: typed dataclasses, read from YAML and the command line by jsonargparse.

A run's settings come in three layers, later ones winning:

1. the defaults of the dataclasses below and, for `model.*`, of the task's model config class;
2. the YAML file of `--config FILE` (a path, or the name of a recipe in hf_vq/recipes: `--config demo_vqvae`),
   or without one the task's default recipe (`hf_vq/recipes/<task>_default.yaml`);
3. the command line: `--KEY VALUE`, `--KEY=VALUE` or `--set KEY=VALUE`.

KEY is a dotted path (`train.lr`, `model.quantizer.beta`) or any unique tail of one (`lr`, `quantizer.beta`).
Values are YAML (`1e-3`, `true`, `null`, `[0.9, 0.95]`); a bool key given without a value means true, and
`--resume` without one means `latest`. An unknown or ambiguous key stops the run before anything is loaded,
naming the closest valid keys; every value is checked against its type. `--print_config` prints the
resolved settings as YAML, `--help` lists every key with its description and the script's defaults.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import re
import sys
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from jsonargparse import ActionConfigFile, ArgumentError, ArgumentParser
from jsonargparse.typing import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

from ..version import __version__, written_by_newer_release


class ConfigError(ValueError):
    """A configuration problem found before training starts (unknown key, bad value, bad input data)."""


# The release that wrote a config file (training_config.yaml carries it); not a setting.
VERSION_KEY = "hf_vq_version"
# Model config fields the training script sets from the dataset's labels.
MODEL_KEYS_SET_BY_SCRIPT = ("num_labels", "id2label", "label2id")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


# ---------------------------------------------------------------------------------------------------- schema
@dataclass
class DataConfig:
    """data: where the images come from and how they become tensors.

    Args:
        source: a `save_to_disk` folder, an image folder, `offline:NAME` (`python -m hf_vq.data list`) or a
            Hub dataset id.
        image_column: the column holding the images.
        label_column: the column holding class labels; null: none (the VQ-VAE needs none).
        train_split: the split to train on.
        test_split: the split to evaluate on; null: "test", else "validation", else a fixed-seed tenth of train.
        max_train_samples: train on a fixed-seed subset of this many examples (quick runs); null: all.
        max_test_samples: evaluate on a fixed-seed subset of this many examples; null: all.
        normalize: pixels to [-1, 1], to [0, 1], or standardised with ImageNet's mean and std.
        resize: resize images whose size differs from model.image_size (otherwise they are an error).
        resample: the filter that resizes.
        augment: training batches only: a random resized crop with a horizontal flip, or none.
        num_workers: data-loader worker processes.
    """

    source: str = "offline:patches"
    image_column: str = "image"
    label_column: str | None = "label"
    train_split: str = "train"
    test_split: str | None = None
    max_train_samples: PositiveInt | None = None
    max_test_samples: PositiveInt | None = None
    normalize: Literal["minus_one_one", "zero_one", "imagenet"] = "minus_one_one"
    resize: bool = False
    resample: Literal["bicubic", "bilinear"] = "bicubic"
    augment: Literal["none", "random_resized_crop"] = "none"
    num_workers: NonNegativeInt = 0


@dataclass
class TrainConfig:
    """train: the optimizers and their schedules.

    Args:
        batch_size: examples per process and per micro-batch.
        epochs: passes over the training split.
        max_steps: optimizer steps; overrides epochs when set.
        gradient_accumulation_steps: micro-batches per optimizer step.
        lr: peak learning rate of AdamW.
        weight_decay: AdamW's decoupled weight decay, never applied to the codebook (A.1).
        betas: AdamW's (β1, β2).
        eps: AdamW's epsilon.
        scheduler: the learning-rate schedule after the linear warmup (§5.3).
        warmup_epochs: linear warmup, in epochs.
        warmup_steps: linear warmup, in optimizer steps; overrides warmup_epochs when set.
        max_grad_norm: clip the gradient norm to this; null: no clipping.
        optimization: the codebook trained jointly with the model, or alternated with it (§4.2).
        inner_steps: alternated: codebook steps per forward; 1 is the fused single pass (§5.4).
        codebook_optimizer: alternated: the optimizer of the codebook (the inner optimizer).
        codebook_lr: alternated: the inner learning rate; null: train.lr.
        codebook_momentum: alternated with sgd: its momentum.
    """

    batch_size: PositiveInt = 64
    epochs: NonNegativeFloat = 1.0
    max_steps: PositiveInt | None = None
    gradient_accumulation_steps: PositiveInt = 1
    lr: PositiveFloat = 1e-4
    weight_decay: NonNegativeFloat = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: PositiveFloat = 1e-8
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_epochs: NonNegativeFloat = 0.0
    warmup_steps: NonNegativeInt | None = None
    max_grad_norm: PositiveFloat | None = None
    optimization: Literal["joint", "alternated"] = "joint"
    inner_steps: PositiveInt = 1
    codebook_optimizer: Literal["adam", "sgd"] = "adam"
    codebook_lr: PositiveFloat | None = None
    codebook_momentum: NonNegativeFloat = 0.9

    def __post_init__(self):  # what spans several keys (each key's range is its type's, checked by the parser)
        _require(self.epochs > 0 or self.max_steps is not None,
                 f"train.epochs must be > 0 (or set train.max_steps), got {self.epochs}")
        _require(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
                 f"train.betas must be two numbers in [0, 1), got {self.betas}")
        _require(self.optimization == "alternated" or self.inner_steps == 1,
                 f"train.inner_steps={self.inner_steps} needs train.optimization: alternated "
                 "(joint training has no inner steps)")


@dataclass
class EvalConfig:
    """eval: evaluation on the test split.

    Args:
        eval_every: optimizer steps between evaluations; 0: only at the end.
        eval_batch_size: examples per process and batch.
        num_reconstructions: VQ-VAE: images in the reconstruction grid.
    """

    eval_every: NonNegativeInt = 0
    eval_batch_size: PositiveInt = 256
    num_reconstructions: PositiveInt = 16


@dataclass
class CheckpointConfig:
    """checkpoint: resumable checkpoints under <output_dir>/checkpoints.

    Args:
        save_every: optimizer steps between checkpoints; 0: none.
        keep_last: complete checkpoints kept; older ones are deleted.
    """

    save_every: NonNegativeInt = 0
    keep_last: PositiveInt = 2


@dataclass
class LoggingConfig:
    """logging: train_log.jsonl, trackers and the progress bar.

    Args:
        log_every: optimizer steps between log records.
        log_with: the Accelerate tracker; auto: tensorboard when installed.
        progress_bar: show a progress bar on the main process.
    """

    log_every: PositiveInt = 10
    log_with: Literal["auto", "tensorboard", "none"] = "auto"
    progress_bar: bool = True


@dataclass
class RunConfig:
    """A training run.

    Args:
        task: a name in hf_vq.training.tasks.TASKS.
        seed: seeds the weights, the data order and every random choice of the run.
        output_dir: the folder of the model, its card, the log, plots and checkpoints.
        mixed_precision: no: the launcher's choice (`accelerate launch --mixed_precision bf16`).
        resume: "latest" (the newest checkpoint in output_dir), "auto" (the same, or a fresh start when there
            is none: the one command a pre-emptible job repeats) or a checkpoint folder; null: a fresh run.
        push_to_hub: upload the finished output folder to this Hub repo id; null: no upload.
        debug_dump_rank_state: each rank writes its quantizer state (multi-process checks).
        model: the model config's fields (see `--help`), passed to its config class.
    """

    task: str = "vqvae"
    seed: int = 0
    output_dir: str = "outputs/run"
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    resume: str | None = None
    push_to_hub: str | None = None
    debug_dump_rank_state: bool = False
    data: DataConfig = field(default_factory=DataConfig)
    model: dict = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        """The YAML of `--config FILE`, headed by the `hf_vq_version` that wrote it."""
        return yaml.safe_dump({VERSION_KEY: __version__, **self.to_dict()}, sort_keys=False)


def flatten(tree: Mapping, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} → {"a.b": 1}: nested mappings become dotted keys; other values are leaves."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


# The schema's sections (`--train FILE_OR_YAML` sets one from YAML).
SECTIONS = tuple(f.name for f in dataclasses.fields(RunConfig) if dataclasses.is_dataclass(f.default_factory))


# ---------------------------------------------------------------------------------------------------- keys
@dataclass(frozen=True)
class Key:
    type: Any
    default: Any
    help: str = ""


def _default(f: dataclasses.Field) -> Any:
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    return list(default) if isinstance(default, tuple) else default  # as YAML reads it back


def _schema_keys(cls, prefix: str = "") -> dict[str, Key]:
    hints = typing.get_type_hints(cls)
    keys = {}
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            keys.update(_schema_keys(hints[f.name], f"{prefix}{f.name}."))
        elif f.name != "model":
            keys[prefix + f.name] = Key(hints[f.name], _default(f))
    return keys


def _docs(*classes) -> dict[str, str]:
    """{parameter: description} from the classes' docstrings (the first class that documents it wins)."""
    import docstring_parser

    docs = {}
    for cls in reversed(classes):
        params = docstring_parser.parse(cls.__doc__ or "").params
        docs.update({p.arg_name: " ".join((p.description or "").split()) for p in params})
    return docs


def _annotation(cls, name: str, annotation: Any) -> Any:
    """A dataclass field's annotation as a type (strings under `from __future__ import annotations`)."""
    if not isinstance(annotation, str):
        return annotation
    owner = next(c for c in cls.__mro__ if name in vars(c).get("__annotations__", {}))
    try:
        return eval(annotation, vars(sys.modules[owner.__module__]))  # what typing.get_type_hints does, field by field
    except Exception:  # a name only imported for type checking: any value passes here, the config class checks it
        return Any


def model_keys(config_class) -> dict[str, Key]:
    """The `model.*` keys of a task: the fields its config class adds to transformers' PreTrainedConfig, with the
    class defaults (a null default is derived from other fields, e.g. a ViT's quantizer_layer), and under
    `model.quantizer.` its `type` and the options of every registered quantizer type that the model does not
    decide, defaulting to the config class's `quantizer_defaults`, then the type's."""
    from transformers import PreTrainedConfig

    from ..models.quantizer_config import MODEL_DECIDED
    from ..quantization.registry import DEFAULT_TYPE, QUANTIZER_TYPES

    bookkeeping = {f.name for f in dataclasses.fields(PreTrainedConfig)}
    docs = _docs(*[c for c in config_class.__mro__ if c.__doc__ and issubclass(c, PreTrainedConfig)])
    keys = {}
    for f in dataclasses.fields(config_class):
        if f.name in bookkeeping or f.name == "quantizer" or f.name.startswith("_"):
            continue
        keys[f"model.{f.name}"] = Key(_annotation(config_class, f.name, f.type), _default(f), docs.get(f.name, ""))
    keys["model.quantizer.type"] = Key(str, DEFAULT_TYPE, f"the quantizer: one of {', '.join(QUANTIZER_TYPES)}; "
                                       "the keys below that belong to other types are left out")
    for spec in QUANTIZER_TYPES.values():
        defaults = {**spec.defaults(), **config_class.quantizer_defaults}
        docs = _docs(spec.cls, *spec.option_classes)
        docs = {name: re.sub(r"\s*Default \S+$", "", doc) for name, doc in docs.items()}
        for options_class in spec.option_classes:
            hints = typing.get_type_hints(options_class)
            for f in dataclasses.fields(options_class):
                path = f"model.quantizer.{f.name}"
                # step_on_forward: set by the training loop
                if f.name not in (*MODEL_DECIDED, "step_on_forward") and path not in keys:
                    keys[path] = Key(hints[f.name], defaults.get(f.name), docs.get(f.name, ""))
    return keys


def quantizer_of_its_type(settings: Mapping, table: KeyTable, where: str) -> dict:
    """`model.quantizer` reduced to the keys of its `type`: the parser fills in every type's keys with their
    defaults; another type's key set to something else is a ConfigError naming it."""
    from ..models.quantizer_config import QuantizerConfig

    kind = settings.get("type")
    try:
        valid = set(QuantizerConfig.valid_keys(kind))
    except ValueError as err:
        raise ConfigError(f"{where}: model.{err}") from None
    for key, value in settings.items():
        if key not in valid and value != table.keys[f"model.quantizer.{key}"].default:
            raise ConfigError(f"{where}: model.quantizer.{key} is not an option of model.quantizer.type {kind!r}; "
                              f"remove it or set the type it belongs to")
    return {key: value for key, value in settings.items() if key in valid}


class KeyTable:
    """Every settable key of a task, by dotted path: the schema's and, under `model.`, the model config's."""

    def __init__(self, model_config_class=None):
        self.keys = {**_schema_keys(RunConfig), **(model_keys(model_config_class) if model_config_class else {})}
        self.sections = {p.rsplit(".", i)[0] for p in self.keys for i in range(1, p.count(".") + 1)}

    def suggest(self, key: str) -> str:
        close = difflib.get_close_matches(key, list(self.keys), n=3, cutoff=0.6)
        if not close:  # compare the last component with the valid keys' last components
            leaf = key.split(".")[-1]
            leaves = difflib.get_close_matches(leaf, {p.split(".")[-1] for p in self.keys}, n=3, cutoff=0.6)
            close = [p for p in self.keys if p.split(".")[-1] in leaves]
        return f"; did you mean {' or '.join(repr(c) for c in close[:3])}?" if close else ""

    def check(self, path: str, where: str) -> None:
        """ConfigError unless `path` is a key: a section, a model field the script sets, or a typo (with the
        closest keys)."""
        if path in self.keys:
            return
        if path in self.sections:
            example = next(p for p in self.keys if p.startswith(path + "."))
            raise ConfigError(f"{where}: {path!r} is a section, not a key; set one of its keys, e.g. {example}")
        if path.startswith("model.") and path.split(".")[-1] in MODEL_KEYS_SET_BY_SCRIPT:
            raise ConfigError(f"{where}: {path!r} is set by the training script from the dataset's labels; remove it")
        raise ConfigError(f"{where}: unknown config key {path!r}{self.suggest(path)} (run with --help for the list)")

    def resolve(self, key: str, where: str = "command line") -> str:
        """The full path of a command-line key: itself, or the one key it is the dotted tail of."""
        key = key.replace("-", "_")
        matches = [p for p in self.keys if p.endswith("." + key)] if key not in self.keys else [key]
        if len(matches) > 1:
            raise ConfigError(f"{where}: key {key!r} is ambiguous: it could be {', '.join(sorted(matches))}; "
                              "use the full path")
        self.check(matches[0] if matches else key, where)
        return matches[0]


# ---------------------------------------------------------------------------------------------------- files and argv
RECIPES = Path(__file__).resolve().parents[1] / "recipes"
"""The training recipes that ship with hf_vq (package data): `--config NAME` reads `RECIPES / "NAME.yaml"`."""


def recipe_names() -> list[str]:
    return sorted(path.stem for path in RECIPES.glob("*.yaml"))


def config_file(value: str | Path) -> Path:
    """The YAML file of `--config VALUE`: an existing file, else the recipe of that name (a file stem in
    hf_vq/recipes). ConfigError when it is neither."""
    path = Path(value).expanduser()
    if path.is_file():
        return path
    recipe = RECIPES / f"{value}.yaml"
    if Path(str(value)).name == str(value) and recipe.is_file():
        return recipe
    raise ConfigError(f"config file {str(value)!r} not found, and it is not the name of a recipe "
                      f"(recipes: {', '.join(recipe_names())})")


def read_config(value: str | Path) -> tuple[dict, str]:
    """(settings, where they come from) of `--config VALUE`: a YAML file or a recipe name."""
    path = config_file(value)
    return read_yaml(path), f"recipe {path.stem!r}" if path.parent == RECIPES else f"config file {str(path)!r}"


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found")
    try:
        tree = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {err}") from None
    if not isinstance(tree, (dict, type(None))):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of settings, got {type(tree).__name__}")
    return tree or {}


def _release_checked(tree: Mapping, table: KeyTable, model_config_class, source: str) -> dict:
    """`tree` without its `hf_vq_version`, every key checked (a newer release's unknown key says to upgrade), and
    a 0.1 file's α converted to this release's units."""
    from ..models.versioning import convert_old_commitment_weight, written_before_mse_commitment

    tree = dict(tree)
    written_by = tree.pop(VERSION_KEY, None)
    try:
        newer = written_by is not None and written_by_newer_release(written_by, f"{source}: {VERSION_KEY}")
    except ValueError as err:
        raise ConfigError(str(err)) from None
    for path in flatten(tree):
        try:
            table.check(path, source)
        except ConfigError as err:
            if newer:  # most likely a setting added after this release
                raise ConfigError(f"{err}. The file was written by hf_vq {written_by}, newer than the installed "
                                  f"{__version__}: upgrade hf_vq (`pip install -U hf_vq`), or remove the key"
                                  ) from None
            raise
    model = dict(tree.get("model") or {})
    if written_by is not None and written_before_mse_commitment(written_by) and model.get("quantizer"):
        dim_key = f"model.{model_config_class.quantizer_dim_field}"
        dim = model.get(model_config_class.quantizer_dim_field, table.keys[dim_key].default)
        model["quantizer"] = convert_old_commitment_weight(model["quantizer"], int(dim), written_by, source)
        tree["model"] = model
    return tree


def _canonical_argv(argv: Sequence[str], table: KeyTable) -> tuple[str | None, list[str]]:
    """(the `--config` file, argv with full key paths, `--set` unfolded and flags given their value)."""
    config_path, out, tokens = None, [], list(argv)
    while tokens:
        token = tokens.pop(0)
        if token in ("-h", "--help") or token.startswith("--print_config"):
            out.append(token)
            continue
        if not token.startswith("--") or token == "--":
            raise ConfigError(f"command line: unexpected argument {token!r}; settings are given as --KEY VALUE "
                              "(run with --help)")
        key, eq, value = token[2:].partition("=")
        if not eq:
            value = tokens.pop(0) if tokens and not tokens[0].startswith("--") else None
        if key == "set":
            if value is None or "=" not in value:
                raise ConfigError(f"command line: --set needs KEY=VALUE, got {value or 'nothing'!r}")
            key, _, value = value.partition("=")
        if key == "config":
            if value is None:
                raise ConfigError("command line: --config needs a YAML file or a recipe name "
                                  f"({', '.join(recipe_names())})")
            config_path = value
            continue
        if key in SECTIONS and value is not None:  # a section as YAML or a YAML file, read by jsonargparse
            out.append(f"--{key}={value}")
            continue
        path = table.resolve(key)
        if value is None:
            if table.keys[path].type is not bool and path != "resume":
                raise ConfigError(f"command line: --{key} needs a value")
            value = "true" if path != "resume" else "latest"
        out.append(f"--{path}={value}")
    return config_path, out


# ---------------------------------------------------------------------------------------------------- --help
MODEL_KEYS_FILE = Path(__file__).with_name("model_keys.json")
"""The `model.*` keys of every task as `describe_keys` writes them (package data): `--help` reads them here, so that
it needs neither torch nor transformers. `write_model_keys()` regenerates it; a test compares it with the classes."""

_RESTRICTED = {"PositiveInt": "int > 0", "NonNegativeInt": "int >= 0", "PositiveFloat": "float > 0",
               "NonNegativeFloat": "float >= 0"}


def type_name(tp: Any) -> str:
    """A key's type as `--help` shows it: `int > 0`, `'joint'|'alternated'`, `float | null`, `list[int]`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return "|".join(repr(a) for a in args)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " | ".join("null" if a is type(None) else type_name(a) for a in args)
    if origin is not None:
        return f"{getattr(origin, '__name__', origin)}[{', '.join(type_name(a) for a in args)}]"
    if tp is Ellipsis:
        return "..."
    name = getattr(tp, "__name__", str(tp))
    return _RESTRICTED.get(name, name)


def describe_keys(keys: Mapping[str, Key]) -> dict[str, dict]:
    """{path: {"type", "default", "help"}}: the keys as `--help` shows them (JSON, for MODEL_KEYS_FILE)."""
    return {path: {"type": type_name(key.type), "default": key.default, "help": key.help}
            for path, key in keys.items()}


def schema_keys() -> dict[str, Key]:
    """The keys of RunConfig and its sections, each with the description its section's docstring gives."""
    hints = typing.get_type_hints(RunConfig)
    docs = {"": _docs(RunConfig)} | {f"{name}.": _docs(hints[name]) for name in SECTIONS}
    return {path: dataclasses.replace(key, help=docs[path[: path.rfind(".") + 1]].get(path.rsplit(".", 1)[-1], ""))
            for path, key in _schema_keys(RunConfig).items()}


def write_model_keys() -> Path:
    """Regenerate `MODEL_KEYS_FILE` from the tasks' model config classes."""
    import json

    from .tasks import TASKS

    table = {name: describe_keys(model_keys(task.config_class)) for name, task in TASKS.items()}
    MODEL_KEYS_FILE.write_text(json.dumps(table, indent=1, ensure_ascii=False) + "\n")
    return MODEL_KEYS_FILE


def _shown(value: Any) -> str:
    """A value as it is typed on the command line (YAML)."""
    if isinstance(value, str):
        return value if value and yaml.safe_load(value) == value and " " not in value else repr(value)
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def help_text(task: str, base: Mapping, source: str, prog: str, model_key_table: Mapping[str, dict] | None = None
              ) -> str:
    """`--help`: how settings are given, then one line per key with the value this run would use (`base`, from
    `source`, over the defaults), its type and its description. `model_key_table` defaults to `MODEL_KEYS_FILE`'s
    entry for `task`."""
    if model_key_table is None:
        import json

        model_key_table = json.loads(MODEL_KEYS_FILE.read_text())[task]
    keys = {**describe_keys(schema_keys()), **model_key_table}
    values = {path: key["default"] for path, key in keys.items()} | flatten(
        {k: v for k, v in base.items() if k != VERSION_KEY})
    lines = [f"usage: {prog} [--config RECIPE|FILE] [--KEY VALUE ...] [--print_config] [--help]", "",
             "Settings: --KEY VALUE, where KEY is a dotted path or a unique tail of one (--lr 3e-4, --quantizer.beta "
             "0.9, --optimization alternated); also --KEY=VALUE and --set KEY=VALUE. Values are YAML.",
             f"--config NAME|FILE: a YAML file, or a recipe by name ({', '.join(recipe_names())}); it replaces the "
             "default recipe. --print_config: the resolved config as YAML.", "",
             f"The values below are this run's: {source} over the built-in defaults.", ""]
    flags = {path: f"--{path} {_shown(values[path])}" for path in keys}
    width = min(56, max(len(flag) for flag in flags.values()) + 2)
    for path, key in keys.items():
        described = f"({key['type']}) {key['help']}".strip()
        lines.append(f"  {flags[path]:<{width}}{described}")
    return "\n".join(lines)


def help_requested(argv: Sequence[str]) -> bool:
    return any(token in ("-h", "--help") for token in argv)


def config_argument(argv: Sequence[str]) -> str | None:
    """The value of `--config` in `argv` (the last one), without parsing the rest."""
    found = None
    for i, token in enumerate(argv):
        if token == "--config" and i + 1 < len(argv):
            found = argv[i + 1]
        elif token.startswith("--config="):
            found = token.partition("=")[2]
    return found


# ---------------------------------------------------------------------------------------------------- the parser
USAGE = "%(prog)s [--config RECIPE|FILE] [--KEY VALUE ...] [--print_config] [--help]"


def build_parser(table: KeyTable, defaults: Mapping, source: str, script: str = "train.py"):
    """The jsonargparse parser of a task's keys: the schema's dataclasses and one `--model.*` argument per model
    key, with `defaults` (a nested mapping from `source`, checked here) as its defaults, so that `--help` shows
    what a run would use."""
    parser = ArgumentParser(prog=script, usage=USAGE, description=__doc__, exit_on_error=False,
                            print_config="--print_config")
    # read by build_config (a file's release and keys are checked first); declared for --help and --print_config
    parser.add_argument("--config", action=ActionConfigFile,
                        help="a YAML file of settings or a recipe name; replaces the default recipe")
    parser.add_class_arguments(RunConfig, as_group=False, skip={"model"}, instantiate=False)
    group = parser.add_argument_group("model: the model config's fields; model.quantizer: the VectorQuantizer options")
    for path, key in table.keys.items():
        if path.startswith("model."):
            group.add_argument(f"--{path}", type=key.type, default=key.default, help=key.help)
    try:
        parser.set_defaults({k: v for k, v in parser.parse_object(dict(defaults)).items() if k != "config"})
    except ArgumentError as err:
        raise ConfigError(f"{source}: {_message(err)}") from None
    return parser


def _message(err: Exception) -> str:
    return " ".join(str(err).split())


def _run_config(parser, namespace) -> RunConfig:
    """The parsed namespace as a RunConfig; its dataclasses check their values."""
    hints = typing.get_type_hints(RunConfig)
    sections = yaml.safe_load(parser.dump(namespace, skip_unset=False))  # plain values, not PositiveInt &c.
    return RunConfig(**{f.name: hints[f.name](**sections[f.name]) if dataclasses.is_dataclass(hints[f.name])
                        else sections[f.name] for f in dataclasses.fields(RunConfig)})


def build_config(task: str, model_config_class=None, *, base: Mapping | None = None, argv: Sequence[str] = (),
                 source: str = "config", script: str = "train.py") -> RunConfig:
    """Defaults ← `base` (a nested mapping: a YAML file or a script's defaults; `--config FILE` in `argv`
    replaces it) ← the rest of `argv`. Raises ConfigError naming the first bad key or value; `--help` and
    `--print_config` print and raise SystemExit(0)."""
    table = KeyTable(model_config_class)
    config_path, args = _canonical_argv(argv, table)
    if config_path is not None:
        base, source = read_config(config_path)
    if help_requested(args):
        model = describe_keys({path: key for path, key in table.keys.items() if path.startswith("model.")})
        print(help_text(task, base or {}, source, script, model))
        raise SystemExit(0)
    if (base or {}).get("task", task) != task:  # before its keys: another task's keys would be reported instead
        _check_task(base["task"], task, source)
    parser = build_parser(table, _release_checked(base or {}, table, model_config_class, source), source, script)
    try:
        cfg = _run_config(parser, parser.parse_args(args))
    except ArgumentError as err:
        raise ConfigError(f"command line: {_message(err)}") from None
    if "quantizer" in cfg.model:
        cfg.model["quantizer"] = quantizer_of_its_type(cfg.model["quantizer"], table, source)
    _check_task(cfg.task, task, source)
    return cfg


def _check_task(found: str, task: str, source: str) -> None:
    if found != task:
        from .tasks import TASKS

        other = TASKS.get(found)
        raise ConfigError(f"{source}: this config is for task {found!r} but the script trains {task!r}"
                          + (f"; train it with `python -m hf_vq.train {command_name(found)}` ({other.script})" if other
                             else f"; tasks: {', '.join(TASKS)}"))


def command_name(task: str) -> str:
    """The task's name on the command line: `python -m hf_vq.train vq-vit` trains task "vq_vit"."""
    return task.replace("_", "-")


@contextlib.contextmanager
def exit_on_config_error():
    """Turn a ConfigError raised inside into `error: <message>` on stderr and exit status 2."""
    try:
        yield
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def load_config(argv: Sequence[str] | None, *, task: str, model_config_class, defaults: Mapping,
                script: str = "train.py", source: str = "the default recipe") -> RunConfig:
    """The configuration of a training script run: `defaults` (or `--config FILE`) plus the command line
    (default: sys.argv). A ConfigError exits with status 2 and its message."""
    with exit_on_config_error():
        return build_config(task, model_config_class, base=defaults, argv=sys.argv[1:] if argv is None else argv,
                            source=source, script=script)


__all__ = [
    "CheckpointConfig", "ConfigError", "DataConfig", "EvalConfig", "KeyTable", "LoggingConfig", "RECIPES",
    "RunConfig", "TrainConfig", "build_config", "config_file", "exit_on_config_error", "flatten", "load_config",
    "model_keys", "read_yaml", "recipe_names",
]
