"""Training configuration: one schema, YAML files, command-line overrides, errors that name the key.

A run's settings come from three layers, later ones winning:

1. the schema defaults below (and the model config class's own defaults for `model.*`);
2. the YAML file given with `--config FILE`, or, without one, the script's embedded default;
3. command-line overrides: `--KEY VALUE`, `--KEY=VALUE` or `--set KEY=VALUE`.

KEY is a dotted path (`train.lr`, `model.quantizer.beta`) or any unique tail of one (`lr`, `quantizer.beta`,
`beta`). Values are parsed as YAML (`1e-3`, `true`, `null`, `[0.9, 0.95]`, `0.9,0.95`) and checked against
the key's type. A flag given without a value means `true` for a bool key and `latest` for `resume`.
An unknown or ambiguous key stops the run before anything is loaded, naming the key and the closest valid
keys. `--print_config` prints the resolved configuration as YAML and exits; `--help` lists every key.
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import yaml

from ..version import __version__, written_by_newer_release


class ConfigError(ValueError):
    """A configuration problem found before training starts (unknown key, bad value, bad input data)."""


# The release that wrote a config file (saved configs carry it); not a setting.
VERSION_KEY = "hf_vq_version"


# ---------------------------------------------------------------------------------------------------- schema
@dataclass
class DataConfig:
    source: str = "offline:patches"  # save_to_disk dir, image folder, offline:NAME or a Hub dataset id
    image_column: str = "image"
    label_column: str | None = "label"  # null: no labels (the VQ-VAE does not need them)
    train_split: str = "train"
    test_split: str | None = None  # null: "test", else "validation", else a share of train
    max_train_samples: int | None = None  # fixed-seed subset, for quick runs
    max_test_samples: int | None = None
    normalize: str = "minus_one_one"  # minus_one_one | zero_one | imagenet
    resize: bool = False  # resize images whose size differs from model.image_size (else: error)
    resample: Literal["bicubic", "bilinear"] = "bicubic"
    augment: Literal["none", "random_resized_crop"] = "none"  # training batches only (+ horizontal flip)
    num_workers: int = 0


@dataclass
class TrainConfig:
    batch_size: int = 64  # per process and per micro-batch
    epochs: float = 1.0
    max_steps: int | None = None  # optimizer steps; overrides epochs when set
    gradient_accumulation_steps: int = 1
    lr: float = 1e-4
    weight_decay: float = 1e-4  # never applied to the codebook parameters (A.1)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"  # after the linear warmup (§5.3)
    warmup_epochs: float = 0.0
    warmup_steps: int | None = None  # overrides warmup_epochs when set
    max_grad_norm: float | None = None  # gradient clipping; null: off
    optimization: Literal["joint", "alternated"] = "joint"  # §4.2
    inner_steps: int = 1  # alternated: codebook steps per forward; 1 = the fused single pass (§5.4)
    codebook_optimizer: Literal["adam", "sgd"] = "adam"  # alternated: the inner (codebook) optimizer
    codebook_lr: float | None = None  # alternated: inner learning rate; null: train.lr
    codebook_momentum: float = 0.9  # alternated with sgd


@dataclass
class EvalConfig:
    eval_every: int = 0  # optimizer steps between evaluations; 0: only at the end
    eval_batch_size: int = 256
    num_reconstructions: int = 16  # VQ-VAE: images in the reconstruction grid


@dataclass
class CheckpointConfig:
    save_every: int = 0  # optimizer steps between checkpoints; 0: none
    keep_last: int = 2


@dataclass
class LoggingConfig:
    log_every: int = 10  # optimizer steps between log records
    log_with: Literal["auto", "tensorboard", "none"] = "auto"  # auto: tensorboard when installed
    progress_bar: bool = True


@dataclass
class RunConfig:
    task: str = "vqvae"  # a name in hf_vq.training.tasks.TASKS
    seed: int = 0
    output_dir: str = "outputs/run"
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    resume: str | None = None  # "latest", "auto" (latest if any, else a fresh start) or a checkpoint directory
    push_to_hub: str | None = None  # repo id
    debug_dump_rank_state: bool = False  # each rank writes its quantizer state (multi-process checks)
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


# Set by the training script from the data, never by the user.
MODEL_KEYS_SET_BY_SCRIPT = ("num_labels", "id2label", "label2id")
# PretrainedConfig bookkeeping that a training config has no business setting.
MODEL_KEYS_HIDDEN = (
    "transformers_version", "architectures", "output_hidden_states", "output_attentions", "return_dict",
    "dtype", "torch_dtype", "is_encoder_decoder", "chunk_size_feed_forward", "_name_or_path", "model_type",
    "problem_type", "tie_word_embeddings",
)


# ---------------------------------------------------------------------------------------------------- key table
@dataclass
class _Key:
    path: str
    annotation: Any  # a type, or None: any YAML value (model fields are checked by the model config)
    default: Any


def _dataclass_keys(cls, prefix: str = "") -> list[_Key]:
    hints = typing.get_type_hints(cls)
    keys = []
    for f in dataclasses.fields(cls):
        annotation = hints[f.name]
        if dataclasses.is_dataclass(annotation):
            keys += _dataclass_keys(annotation, f"{prefix}{f.name}.")
        elif f.name != "model":
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            keys.append(_Key(prefix + f.name, annotation, default))
    return keys


def model_defaults(config_class) -> dict[str, Any]:
    """User-settable fields of a transformers config class (a dataclass) and their defaults as a default
    instance shows them; the nested `quantizer` is expanded to every `VectorQuantizer` option. (Only the
    keys a run sets are passed to the config class, so derived defaults such as a ViT's quantizer_layer
    still follow the other fields.)"""
    instance = config_class()
    out = {}
    for f in dataclasses.fields(config_class):
        if f.name in MODEL_KEYS_HIDDEN or f.name in MODEL_KEYS_SET_BY_SCRIPT or f.name.startswith("_"):
            continue
        value = getattr(instance, f.name)
        if f.name == "quantizer":
            value = {k: v for k, v in dict(value or {}).items() if k != "step_on_forward"}
        out[f.name] = value
    return out


def _flatten(tree: Mapping, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if not isinstance(key, str):
            raise ConfigError(f"config keys must be strings, got {key!r} under {prefix.rstrip('.') or 'the top level'}")
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def _unflatten(flat: Mapping[str, Any]) -> dict:
    tree: dict = {}
    for path, value in flat.items():
        node = tree
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return tree


class KeyTable:
    """Every settable key of a task: the schema's and, under `model.`, the model config's."""

    def __init__(self, model_config_class=None):
        self.keys: dict[str, _Key] = {k.path: k for k in _dataclass_keys(RunConfig)}
        self.model_defaults = model_defaults(model_config_class) if model_config_class is not None else {}
        for path, default in _flatten(self.model_defaults, "model.").items():
            self.keys[path] = _Key(path, None, default)
        # a nested dict left empty in the defaults (e.g. a quantizer section) is still a valid prefix
        self._sections = {".".join(p.split(".")[:i]) for p in self.keys for i in range(1, p.count(".") + 1)}

    def suggest(self, key: str) -> str:
        names = list(self.keys)
        close = difflib.get_close_matches(key, names, n=3, cutoff=0.6)
        if not close:  # compare the last component against the valid keys' last components
            leaf = key.split(".")[-1]
            by_leaf = {}
            for p in names:
                by_leaf.setdefault(p.split(".")[-1], []).append(p)
            for match in difflib.get_close_matches(leaf, list(by_leaf), n=3, cutoff=0.6):
                close += by_leaf[match]
        return f"; did you mean {' or '.join(repr(c) for c in close[:3])}?" if close else ""

    def resolve(self, key: str, where: str) -> str:
        """Full path of a command-line key (full path or unique dotted tail)."""
        key = key.replace("-", "_") if key not in self.keys else key
        if key in self.keys:
            return key
        matches = [p for p in self.keys if p.endswith("." + key)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise ConfigError(f"{where}: key {key!r} is ambiguous: it could be {', '.join(sorted(matches))}; use the full path")
        if key in self._sections:
            raise ConfigError(f"{where}: {key!r} is a section, not a key; set one of its keys, e.g. {key}.{next(p.split('.')[-1] for p in self.keys if p.startswith(key + '.'))}")
        raise ConfigError(f"{where}: unknown config key {key!r}{self.suggest(key)} (run with --help for the list)")

    def check(self, path: str, where: str) -> None:
        if path not in self.keys:
            if path in self._sections:
                raise ConfigError(f"{where}: {path!r} must be a mapping of keys, not a single value")
            if path.split(".")[0] == "model" and path.split(".")[-1] in MODEL_KEYS_SET_BY_SCRIPT:
                raise ConfigError(f"{where}: {path!r} is set by the training script from the dataset's labels; remove it")
            raise ConfigError(f"{where}: unknown config key {path!r}{self.suggest(path)}")


# ---------------------------------------------------------------------------------------------------- values
def _type_name(annotation) -> str:
    origin = typing.get_origin(annotation)
    if annotation is None:
        return "any (checked by the model config)"
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is list:
        return f"list of {_type_name(typing.get_args(annotation)[0])}"
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def coerce(value: Any, annotation, path: str, where: str) -> Any:
    """`value` converted to `annotation`, or ConfigError naming the key."""
    if annotation is None:
        return value
    origin = typing.get_origin(annotation)
    error = ConfigError(f"{where}: {path} must be {_type_name(annotation)}, got {value!r}")
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, path, where)
            except ConfigError:
                pass
        raise error
    if origin is Literal:
        if value in typing.get_args(annotation):
            return value
        raise error
    if origin is list:
        (item,) = typing.get_args(annotation)
        if isinstance(value, str):
            value = [yaml.safe_load(v) for v in value.split(",")]
        if not isinstance(value, (list, tuple)):
            raise error
        return [coerce(v, item, f"{path}[{i}]", where) for i, v in enumerate(value)]
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise error
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                raise error from None
            if number.is_integer():
                return int(number)
        raise error
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                raise error from None
        raise error
    if annotation is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise error
    raise error


def _parse_value(raw: str) -> Any:
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def _coerce_model_value(value: Any, default: Any) -> Any:
    """Model fields have no schema here: make a YAML string like 1e-4 a float when the default is a number."""
    if isinstance(value, str) and isinstance(default, float) and not isinstance(default, bool):
        try:
            return float(value)
        except ValueError:
            return value
    return value


# ---------------------------------------------------------------------------------------------------- CLI
def parse_cli(argv: Sequence[str]) -> tuple[str | None, list[tuple[str, Any]], set[str]]:
    """argv → (config path, [(key, value)], flags among help/print_config). A flag without a value gets
    the marker `_NO_VALUE`."""
    config_path, overrides, flags = None, [], set()
    tokens = list(argv)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if token in ("-h", "--help"):
            flags.add("help")
            continue
        if not token.startswith("--") or token == "--":
            raise ConfigError(f"command line: unexpected argument {token!r}; settings are given as --KEY VALUE (run with --help)")
        key, eq, raw = token[2:].partition("=")
        if not eq:
            if i < len(tokens) and not tokens[i].startswith("--"):
                raw = tokens[i]
                i += 1
            else:
                raw = _NO_VALUE
        if key == "print_config":
            flags.add("print_config")
            continue
        if key == "config":
            if raw is _NO_VALUE:
                raise ConfigError("command line: --config needs a YAML file path")
            config_path = raw
            continue
        if key == "set":
            if raw is _NO_VALUE or "=" not in raw:
                raise ConfigError(f"command line: --set needs KEY=VALUE, got {raw if raw is not _NO_VALUE else 'nothing'!r}")
            key, _, raw = raw.partition("=")
        overrides.append((key, raw))
    return config_path, overrides, flags


class _NoValue:
    def __repr__(self) -> str:
        return "<no value>"


_NO_VALUE = _NoValue()


def help_text(table: KeyTable, script: str) -> str:
    lines = [
        f"usage: {script} [--config FILE.yaml] [--KEY VALUE ...] [--print_config]",
        "",
        "KEY is a dotted path or any unique tail of one (--lr, --quantizer.beta, --train.batch_size);",
        "--KEY=VALUE and --set KEY=VALUE work too. Values are YAML. Keys and their schema defaults (a config",
        "file or the script's embedded default sets most of them; --print_config shows what a run will use):",
        "",
    ]
    for key in table.keys.values():
        lines.append(f"  --{key.path:42s} {_type_name(key.annotation):28s} default: {key.default!r}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- loading
def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found")
    try:
        tree = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {err}") from None
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of settings, got {type(tree).__name__}")
    return tree


def build_config(
    task: str,
    model_config_class=None,
    *,
    base: Mapping | None = None,
    overrides: Sequence[tuple[str, Any]] = (),
    source: str = "config",
) -> RunConfig:
    """Defaults ← `base` (nested mapping, e.g. a YAML file) ← `overrides` ([(cli key, raw string or value)]).

    Raises ConfigError naming the first bad key or value."""
    table = KeyTable(model_config_class)
    flat = {path: key.default for path, key in table.keys.items() if not path.startswith("model.")}
    from_cli = set()
    base = dict(base or {})
    written_by = base.pop(VERSION_KEY, None)
    try:
        newer = written_by is not None and written_by_newer_release(written_by, f"{source}: {VERSION_KEY}")
    except ValueError as err:
        raise ConfigError(str(err)) from None
    for path, value in _flatten(base).items():
        try:
            table.check(path, source)
        except ConfigError as err:
            if newer:  # most likely a setting added after this release
                raise ConfigError(f"{err}. The file was written by hf_vq {written_by}, newer than the installed "
                                  f"{__version__}: upgrade hf_vq (`pip install -U hf_vq`), or remove the key") from None
            raise
        flat[path] = value
    for key, raw in overrides:
        path = table.resolve(key, "command line")
        from_cli.add(path)
        annotation = table.keys[path].annotation
        if raw is _NO_VALUE:
            if annotation is bool:
                value = True
            elif path == "resume":
                value = "latest"
            else:
                raise ConfigError(f"command line: --{key} needs a value")
        else:
            value = _parse_value(raw) if isinstance(raw, str) else raw
        flat[path] = value
    for path in flat:
        key = table.keys[path]
        if path.startswith("model."):
            flat[path] = _coerce_model_value(flat[path], key.default)
        else:
            flat[path] = coerce(flat[path], key.annotation, path, "command line" if path in from_cli else source)
    if flat["task"] != task:
        from .tasks import TASKS

        other = TASKS.get(flat["task"])
        raise ConfigError(f"{source}: this config is for task {flat['task']!r} but the script trains {task!r}"
                          + (f"; use {other.script}" if other else f"; tasks: {', '.join(TASKS)}"))
    tree = _unflatten(flat)
    config = RunConfig(
        task=tree["task"], seed=tree["seed"], output_dir=tree["output_dir"], mixed_precision=tree["mixed_precision"],
        resume=tree["resume"], push_to_hub=tree["push_to_hub"], debug_dump_rank_state=tree["debug_dump_rank_state"],
        data=DataConfig(**tree["data"]), model=tree.get("model", {}), train=TrainConfig(**tree["train"]),
        eval=EvalConfig(**tree["eval"]), checkpoint=CheckpointConfig(**tree["checkpoint"]),
        logging=LoggingConfig(**tree["logging"]),
    )
    validate(config)
    return config


def validate(config: RunConfig) -> None:
    """Cross-field checks of the schema values (the model config checks its own)."""
    t = config.train

    def need(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(message)

    need(t.batch_size >= 1, f"train.batch_size must be >= 1, got {t.batch_size}")
    need(t.gradient_accumulation_steps >= 1, f"train.gradient_accumulation_steps must be >= 1, got {t.gradient_accumulation_steps}")
    need(t.epochs > 0 or (t.max_steps or 0) > 0, f"train.epochs must be > 0 (or set train.max_steps), got {t.epochs}")
    need(t.max_steps is None or t.max_steps >= 1, f"train.max_steps must be >= 1 or null, got {t.max_steps}")
    need(t.lr > 0, f"train.lr must be > 0, got {t.lr}")
    need(t.weight_decay >= 0, f"train.weight_decay must be >= 0, got {t.weight_decay}")
    need(len(t.betas) == 2 and all(0 <= b < 1 for b in t.betas), f"train.betas must be two numbers in [0, 1), got {t.betas}")
    need(t.warmup_epochs >= 0, f"train.warmup_epochs must be >= 0, got {t.warmup_epochs}")
    need(t.warmup_steps is None or t.warmup_steps >= 0, f"train.warmup_steps must be >= 0 or null, got {t.warmup_steps}")
    need(t.inner_steps >= 1, f"train.inner_steps must be >= 1, got {t.inner_steps}")
    need(t.optimization == "alternated" or t.inner_steps == 1,
         f"train.inner_steps={t.inner_steps} needs train.optimization: alternated (joint training has no inner steps)")
    need(t.codebook_lr is None or t.codebook_lr > 0, f"train.codebook_lr must be > 0 or null, got {t.codebook_lr}")
    need(t.max_grad_norm is None or t.max_grad_norm > 0, f"train.max_grad_norm must be > 0 or null, got {t.max_grad_norm}")
    need(config.data.normalize in ("minus_one_one", "zero_one", "imagenet"),
         f"data.normalize must be 'minus_one_one', 'zero_one' or 'imagenet', got {config.data.normalize!r}")
    for name in ("max_train_samples", "max_test_samples"):
        value = getattr(config.data, name)
        need(value is None or value >= 1, f"data.{name} must be >= 1 or null, got {value}")
    need(config.data.num_workers >= 0, f"data.num_workers must be >= 0, got {config.data.num_workers}")
    need(config.eval.eval_every >= 0, f"eval.eval_every must be >= 0, got {config.eval.eval_every}")
    need(config.eval.eval_batch_size >= 1, f"eval.eval_batch_size must be >= 1, got {config.eval.eval_batch_size}")
    need(config.checkpoint.save_every >= 0, f"checkpoint.save_every must be >= 0, got {config.checkpoint.save_every}")
    need(config.checkpoint.keep_last >= 1, f"checkpoint.keep_last must be >= 1, got {config.checkpoint.keep_last}")
    need(config.logging.log_every >= 1, f"logging.log_every must be >= 1, got {config.logging.log_every}")


def load_config(argv: Sequence[str] | None, *, task: str, model_config_class, defaults: Mapping, script: str = "train.py") -> RunConfig:
    """The configuration of a training script run: `--config FILE` (else `defaults`) plus the overrides.

    `--help` and `--print_config` print and exit; a ConfigError exits with status 2 and its message."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        config_path, overrides, flags = parse_cli(argv)
        if "help" in flags:
            print(__doc__.strip() + "\n\n" + help_text(KeyTable(model_config_class), script))
            raise SystemExit(0)
        base = read_yaml(config_path) if config_path else defaults
        config = build_config(task, model_config_class, base=base, overrides=overrides,
                              source=f"config file {config_path!r}" if config_path else "embedded default config")
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    if "print_config" in flags:
        print(config.to_yaml(), end="")
        raise SystemExit(0)
    return config


__all__ = [
    "CheckpointConfig", "ConfigError", "DataConfig", "EvalConfig", "KeyTable", "LoggingConfig", "RunConfig",
    "TrainConfig", "build_config", "coerce", "load_config", "model_defaults", "parse_cli", "read_yaml",
]
