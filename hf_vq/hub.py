"""Model cards and a one-commit Hub upload for hf_vq models.

`render_model_card` fills a Jinja template of `hf_vq/model_cards/` (package data: `vq_vit.md.j2` for a config
`model_type` containing "vit", `vq_vae.md.j2` otherwise; or any template file) with the Hub metadata (library,
tags, datasets, metrics, `model-index`) and a body describing the quantizer, codebook usage, evaluation,
training arguments, loading code, plots and the paper's citation.

`push_folder` uploads a saved model folder in ONE commit with `HfApi.upload_folder`, after checking locally
that it holds safetensors weights and no pickle file (so a bad folder never leaves a half-uploaded repo); the
training scripts push their finished output folder with it. `push_to_hub` saves a model, its image processor,
card and plots to a temporary folder and pushes that; `python -m hf_vq.hub push FOLDER REPO_ID` pushes a finished
training folder from the command line, and `check_push_access` is a training run's check before it starts. Neither
uses `model.push_to_hub` (which replaces README.md with transformers' own card) nor `ModelCard.push_to_hub`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shlex
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData
from huggingface_hub.hf_api import DEFAULT_IGNORE_PATTERNS
from huggingface_hub.utils import HFValidationError, filter_repo_objects, validate_repo_id

__all__ = ["CITATION", "LOCAL_ONLY", "PICKLE_SUFFIXES", "check_push_access", "files_to_upload", "find_template",
           "push_folder", "push_to_hub", "render_model_card", "retry_command", "save_model_card"]

TEMPLATES = Path(__file__).resolve().parent / "model_cards"

# What each bundled template describes: its Hub task (pipeline tag), its model tag, and whether the model is a
# classifier (num_labels listed; AutoModelForImageClassification in the loading snippet).
_TEMPLATE_KINDS = {
    "vq_vit": {"task": "image-classification", "tag": "vq-vit", "classifier": True},
    "vq_vae": {"task": "image-to-image", "tag": "vq-vae", "classifier": False},
}
TEMPLATE_NAMES = tuple(_TEMPLATE_KINDS)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
PLOTS_DIR = "plots"

PAPER_TITLE = (
    "Straightening Out the Straight-Through Estimator: Overcoming Optimization Challenges in Vector "
    "Quantized Networks"
)
CITATION = """@inproceedings{huh2023straightening,
  title     = {Straightening Out the Straight-Through Estimator: Overcoming Optimization Challenges in
               Vector Quantized Networks},
  author    = {Huh, Minyoung and Cheung, Brian and Agrawal, Pulkit and Isola, Phillip},
  booktitle = {Proceedings of the 40th International Conference on Machine Learning},
  series    = {Proceedings of Machine Learning Research},
  volume    = {202},
  publisher = {PMLR},
  year      = {2023}
}"""

# Quantizer options shown in the main table (label with the paper's symbol), in this order.
_QUANTIZER_LABELS = {
    "codebook_size": "Codebook size K",
    "dim": "Code dimension D",
    "distance": "Distance",
    "commitment_weight": "α, commitment weight (eq 10)",
    "beta": "β, codebook share of the commitment loss (eqs 8–9)",
    "sync_nu": "ν, synchronized update (eq 21)",
    "affine": "Affine re-parameterisation (§4.1)",
    "affine_lr_scale": "Affine lr scale",
    "affine_groups": "Affine groups",
    "replace_after": "LRU replacement after (steps, 0 = off)",
    "kmeans_init": "k-means initialisation (A.7)",
    "codebook_update": "Codebook update",
}
_METRIC_LABELS = {
    "accuracy": "Accuracy",
    "top1_accuracy": "Top-1 accuracy",
    "top5_accuracy": "Top-5 accuracy",
    "loss": "Loss",
    "mse": "MSE",
    "mae": "MAE",
    "psnr": "PSNR (dB)",
    "ssim": "SSIM",
    "perplexity": "Codebook perplexity",
    "active_codes": "Active codes (fraction of K)",
    "commitment": "Commitment loss",
    "quantization_error": "Quantization error",
}
_ARCHITECTURE_KEYS = (
    "image_size", "patch_size", "num_channels", "in_channels", "out_channels", "hidden_size",
    "num_hidden_layers", "num_attention_heads", "intermediate_size", "quantizer_layer", "quantize_cls_token",
    "latent_channels", "block_out_channels", "layers_per_block", "down_block_types", "up_block_types",
    "sample_size", "num_labels",
)
# Trainer bookkeeping that is not a model metric (dropped from eval_results after stripping "eval_").
_NOT_METRICS = {"runtime", "samples_per_second", "steps_per_second", "epoch"}
_SECRET = re.compile(r"token|secret|password|api_key|credential", re.IGNORECASE)
_PLOT_LINK = re.compile(r"\]\((plots/[^)\s]+)\)")


# ----------------------------------------------------------------------------------------------- helpers


def _library(model: Any) -> str:
    """"transformers" for a PreTrainedModel (the Hub then shows an AutoModel snippet), else "hf_vq"."""
    from transformers import PreTrainedModel

    return "transformers" if isinstance(model, PreTrainedModel) else "hf_vq"


def find_template(name_or_path: str | os.PathLike) -> Path:
    """Path of a model-card template: an existing file path, or a bundled name ("vq_vit", "vq_vae")."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if str(name_or_path) in TEMPLATE_NAMES:
        return TEMPLATES / f"{name_or_path}.md.j2"
    raise FileNotFoundError(f"Model card template {str(name_or_path)!r} is neither a file nor one of {TEMPLATE_NAMES}")


def _fmt(value: Any) -> str:
    """One table cell: numbers compact, booleans yes/no, None as "none", pipes escaped."""
    if value is None:
        text = "none"
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, (int, str)):
        text = str(value)
    else:
        try:
            text = json.dumps(value, default=str)
        except (TypeError, ValueError):
            text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _quantizer_settings(model: Any, given: Mapping | None) -> tuple[dict, list[str]]:
    """(settings, names of the VectorQuantizer modules): the first module's options, then config.quantizer,
    then `given`."""
    from .quantization import VectorQuantizer

    found = [(name, m) for name, m in model.named_modules() if isinstance(m, VectorQuantizer)]
    settings = dataclasses.asdict(found[0][1].options) if found else {}
    settings.update(getattr(model.config, "quantizer", None) or {})
    settings.update(given or {})
    return settings, [name for name, _ in found]


def _techniques(settings: Mapping, training_args: Mapping) -> list[str]:
    """The paper's techniques this model was configured with, as Markdown bullet text."""
    out = []
    affine = settings.get("affine")
    if affine:
        kind = "EMA statistics, A.12" if affine == "ema" else "learnable, A.1"
        out.append(f"affine re-parameterisation of the codebook ({kind}; §4.1)")
    nu = settings.get("sync_nu")
    if isinstance(nu, (int, float)) and nu > 0:
        out.append(f"synchronized commitment update, ν = {_fmt(float(nu))} (§4.3)")
    if any("altern" in str(k).lower() and v for k, v in training_args.items()):
        out.append("alternated optimization of the codebook (§4.2)")
    replace_after = settings.get("replace_after")
    if isinstance(replace_after, int) and not isinstance(replace_after, bool) and replace_after > 0:
        out.append(f"least-recently-used code replacement after {replace_after} idle steps (§3)")
    if settings.get("kmeans_init"):
        out.append("k-means codebook initialisation (A.7)")
    if settings.get("distance") == "cosine":
        out.append("l2-normalised (cosine) code search")
    if settings.get("codebook_update") == "ema":
        out.append("EMA codebook updates (A.2)")
    return out


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


def _training_length(training: Mapping) -> str | None:
    """"N optimizer steps (E epochs of M examples), T of training on P process(es)" from a training run's facts
    (`steps`, `steps_per_epoch`, `train_examples`, `train_seconds`, `num_processes`); None without `steps`."""
    steps = training.get("steps")
    if not isinstance(steps, int) or isinstance(steps, bool):
        return None
    text = f"{steps:,} optimizer steps"
    per_epoch, examples = training.get("steps_per_epoch"), training.get("train_examples")
    if isinstance(per_epoch, int) and per_epoch > 0:
        of = f" of {examples:,} examples" if isinstance(examples, int) else ""
        text += f" ({steps / per_epoch:.3g} epochs{of})"
    if isinstance(training.get("train_seconds"), (int, float)):
        text += f", {_duration(training['train_seconds'])} of training"
        processes = training.get("num_processes")
        text += f" on {processes} process{'es' if processes != 1 else ''}" if isinstance(processes, int) else ""
    return text


def _eval_results(
    eval_results: Mapping[str, float] | None, task_type: str, dataset_id: str | None, dataset_name: str | None,
    dataset_split: str | None,
) -> tuple[list[EvalResult], list[dict]]:
    if not eval_results:
        return [], []
    if not (dataset_id or dataset_name):
        raise ValueError("eval_results need dataset_id or dataset_name: every model-index entry names its dataset")
    results, rows = [], []
    for key, value in eval_results.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"eval_results keys must be metric names (str), got {key!r}")
        metric = key[len("eval_"):] if key.startswith("eval_") else key
        if metric in _NOT_METRICS:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"eval_results[{key!r}] must be a finite number, got {value!r}")
        label = _METRIC_LABELS.get(metric, metric.replace("_", " ").capitalize())
        results.append(EvalResult(
            task_type=task_type,
            dataset_type=dataset_id or dataset_name,
            dataset_name=dataset_name or dataset_id,
            dataset_split=dataset_split,
            metric_type=metric,
            metric_name=label,
            metric_value=float(value),
        ))
        rows.append({"metric": label, "key": metric, "value": _fmt(float(value))})
    return results, rows


def _plot_link(plot: str | os.PathLike) -> str:
    """Link written into the card: a relative path as given; an absolute one as plots/<file name>."""
    path = Path(plot)
    if path.is_absolute():
        return f"{PLOTS_DIR}/{path.name}"
    return PurePosixPath(*path.parts).as_posix()


# ---------------------------------------------------------------------------------------------- the card


def render_model_card(
    model: Any,
    *,
    model_name: str,
    template: str | os.PathLike | None = None,
    repo_id: str | None = None,
    dataset_name: str | None = None,
    dataset_id: str | None = None,
    dataset_split: str | None = None,
    eval_results: Mapping[str, float] | None = None,
    quantizer_settings: Mapping | None = None,
    perplexity: float | None = None,
    active_codes: float | None = None,
    training_args: Mapping | None = None,
    plots: Iterable[str | os.PathLike] = (),
    base_model: str | list[str] | None = None,
    license: str = "apache-2.0",
    tags: Iterable[str] = (),
    has_image_processor: bool = True,
    codebook_usage: Mapping[str, float] | None = None,
) -> ModelCard:
    """Render the model card of an hf_vq (or transformers) model; no network access.

    Args:
        model: the model (its config's `model_type` picks the template: "vit" in it → vq_vit, else vq_vae).
        model_name: title of the card and name of the `model-index` entry.
        template: a template path, or "vq_vit"/"vq_vae"; None chooses from the model.
        repo_id: Hub id used in the loading snippet; defaults to `model_name`.
        dataset_name, dataset_id, dataset_split: evaluation data (display name, Hub dataset id, split).
            `dataset_id` also goes into the `datasets` metadata.
        eval_results: metric → value (e.g. {"accuracy": 0.91, "perplexity": 412.0}); a leading "eval_" is
            stripped and Trainer bookkeeping (runtime, samples_per_second, steps_per_second, epoch) dropped.
            Becomes `model-index`; requires `dataset_id` or `dataset_name`.
        quantizer_settings: merged over the options of the model's first `VectorQuantizer` and its
            `config.quantizer`.
        perplexity, active_codes: the codebook usage section: 2^H of the code histogram, and the fraction of
            the K codes selected at least once.
        training_args: a dict; keys naming tokens/secrets are dropped.
        plots: images to embed; relative paths are linked as given, absolute ones as plots/<file name>
            (where `push_to_hub` uploads them).
        base_model, license, tags: card metadata; tags are added to "hf_vq" and "vector-quantization".
        has_image_processor: the repo has a preprocessor_config.json (the loading snippet uses it).
        codebook_usage: deprecated (0.1's {"perplexity": ..., "active_codes": ...}); use perplexity and
            active_codes.

    Returns:
        `huggingface_hub.ModelCard`; its `library_name` is "transformers" for a `PreTrainedModel`, else "hf_vq".
    """
    if not isinstance(model_name, str) or not model_name.strip():
        raise ValueError(f"model_name must be a non-empty string, got {model_name!r}")
    if codebook_usage is not None:
        warnings.warn("render_model_card(codebook_usage=...) is deprecated; pass perplexity= and active_codes=",
                      FutureWarning, stacklevel=2)
        perplexity, active_codes = codebook_usage.get("perplexity"), codebook_usage.get("active_codes")
    tags = [tags] if isinstance(tags, str) else list(tags)
    plots = [plots] if isinstance(plots, (str, os.PathLike)) else list(plots)
    config = model.config
    if template is None or str(template) not in TEMPLATE_NAMES:  # a custom template still gets the task metadata
        kind = "vq_vit" if "vit" in config.model_type.lower() else "vq_vae"
    else:
        kind = str(template)
    task, classifier = _TEMPLATE_KINDS[kind]["task"], _TEMPLATE_KINDS[kind]["classifier"]
    class_name, library = type(model).__name__, _library(model)
    auto_class = (
        "AutoModelForImageClassification" if classifier and "ImageClassification" in class_name else "AutoModel"
    )

    training = {k: v for k, v in (training_args or {}).items() if not _SECRET.search(str(k))}
    settings, quantizer_modules = _quantizer_settings(model, quantizer_settings)
    results, eval_rows = _eval_results(eval_results, task, dataset_id, dataset_name, dataset_split)
    card_data = ModelCardData(
        library_name=library,
        license=license,
        tags=["hf_vq", "vector-quantization", _TEMPLATE_KINDS[kind]["tag"], task, *tags],
        datasets=[dataset_id] if dataset_id else None,
        metrics=[row["key"] for row in eval_rows] or None,
        pipeline_tag=task,
        base_model=base_model,
        model_name=model_name if results else None,
        eval_results=results or None,
    )
    usage = {"Perplexity 2^H": perplexity, "Active codes (fraction of K)": active_codes,
             "Codebook size K": settings.get("codebook_size")}
    return ModelCard.from_template(
        card_data,
        template_path=str(find_template(template if template is not None else kind)),
        model_name=model_name,
        repo_id=repo_id or model_name,
        model_class=class_name,
        model_type=config.model_type,
        is_transformers=library == "transformers",
        has_image_processor=bool(has_image_processor),
        image_size=getattr(config, "image_size", 224),
        num_channels=getattr(config, "num_channels", 3),
        auto_class=auto_class,
        has_remote_code=bool(getattr(config, "auto_map", None) or getattr(config, "remote_code_auto_map", None)),
        exports_to_diffusers=callable(getattr(model, "to_diffusers", None))
        and getattr(config, "pre_quant_norm", "none") == "none",
        training_length=_training_length(training),
        task=task,
        dataset_name=dataset_name or dataset_id,
        dataset_id=dataset_id,
        dataset_split=dataset_split,
        techniques=_techniques(settings, training),
        quantizer_rows=[{"name": label, "value": _fmt(settings[key])} for key, label in _QUANTIZER_LABELS.items()
                        if key in settings],
        quantizer_other_rows=[{"name": key, "value": _fmt(settings[key])} for key in sorted(settings)
                              if key not in _QUANTIZER_LABELS],
        quantizer_modules=quantizer_modules,
        usage_rows=[{"name": name, "value": _fmt(value)} for name, value in usage.items() if value is not None]
        if perplexity is not None or active_codes is not None else [],
        eval_rows=eval_rows,
        training_rows=[{"name": str(k), "value": _fmt(v)} for k, v in training.items()],
        architecture_rows=[{"name": key, "value": _fmt(getattr(config, key))} for key in _ARCHITECTURE_KEYS
                           if getattr(config, key, None) is not None and (key != "num_labels" or classifier)],
        num_parameters=f"{sum(p.numel() for p in model.parameters()):,}",
        plots=[{"path": _plot_link(p), "title": Path(p).stem.replace("_", " ").replace("-", " ")} for p in plots],
        paper_title=PAPER_TITLE,
        citation=CITATION,
    )


def save_model_card(
    card: ModelCard | str, directory: str | os.PathLike, *, plots: Iterable[str | os.PathLike] = ()
) -> Path:
    """Write `card` to `directory/README.md` and copy `plots` to `directory/plots/`; returns the README path."""
    plot_paths = _check_plots(plots)
    if not isinstance(card, (ModelCard, str)):
        raise TypeError(f"card must be a huggingface_hub.ModelCard or str, got {type(card).__name__}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    readme = directory / "README.md"
    readme.write_text(str(card), encoding="utf-8")
    if plot_paths:
        (directory / PLOTS_DIR).mkdir(exist_ok=True)
        for path in plot_paths:
            target = directory / PLOTS_DIR / path.name
            if target.resolve() != path.resolve():
                shutil.copyfile(path, target)
    return readme


# ------------------------------------------------------------------------------------------------- push


def _check_repo_id(repo_id: Any) -> None:
    try:
        if not isinstance(repo_id, str):
            raise HFValidationError(f"not a string ({type(repo_id).__name__})")
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(
            f"repo_id must be 'name' or 'namespace/name' (letters, digits, '-', '_', '.'), got {repo_id!r}: {error}"
        ) from None


def _check_plots(plots: Iterable[str | os.PathLike]) -> list[Path]:
    if isinstance(plots, (str, os.PathLike)):
        plots = [plots]
    paths, names = [], {}
    for plot in plots:
        path = Path(plot)
        if not path.is_file():
            raise FileNotFoundError(f"plot file not found: {path}")
        if path.name in names:
            raise ValueError(
                f"two plots share the file name {path.name!r} ({names[path.name]} and {path}); "
                f"they both go to {PLOTS_DIR}/"
            )
        names[path.name] = path
        paths.append(path)
    return paths


def _check_path_in_repo(path_in_repo: Any) -> str:
    if not isinstance(path_in_repo, str) or not path_in_repo:
        raise ValueError(f"extra_files keys must be non-empty repo paths, got {path_in_repo!r}")
    posix = PurePosixPath(path_in_repo)
    if posix.is_absolute() or ".." in posix.parts or "\\" in path_in_repo:
        raise ValueError(f"extra_files key {path_in_repo!r} must be a relative POSIX path inside the repo")
    return posix.as_posix()


def _is_pickle(name: str) -> bool:
    return name.lower().endswith(PICKLE_SUFFIXES)


def files_to_upload(folder: str | os.PathLike, ignore_patterns: Iterable[str] = ()) -> list[str]:
    """The repo paths `HfApi.upload_folder(folder, ignore_patterns=...)` sends (huggingface_hub's own filter)."""
    folder = Path(folder)
    paths = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return list(filter_repo_objects(paths, ignore_patterns=[*ignore_patterns, *DEFAULT_IGNORE_PATTERNS]))


def push_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    ignore_patterns: Iterable[str] = (),
    commit_message: str = "Upload hf_vq model",
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    create_repo: bool = True,
):
    """Upload `folder` (a saved model: safetensors weights, config, card, plots, ...) to the Hub in one commit
    with `HfApi.upload_folder`, leaving out `ignore_patterns`; returns its `CommitInfo`.

    Raises ValueError for a bad repo_id or commit message and RuntimeError when the files to upload hold a
    pickle file or no safetensors weights, before any network call; warns when README.md links a plot that is
    not uploaded. A `revision` branch is created if missing (with `create_repo`)."""
    _check_repo_id(repo_id)
    if not isinstance(commit_message, str) or not commit_message.strip():
        raise ValueError("commit_message must be a non-empty string")
    ignore_patterns = list(ignore_patterns)
    files = files_to_upload(folder, ignore_patterns)
    pickles = [name for name in files if _is_pickle(name)]
    if pickles:
        raise RuntimeError(f"{folder} holds pickle files {pickles}; only safetensors weights are uploaded")
    if not any(name.endswith(".safetensors") for name in files):
        raise RuntimeError(f"{folder} holds no .safetensors file (files: {files})")
    readme = Path(folder) / "README.md"
    links = set(_PLOT_LINK.findall(readme.read_text(encoding="utf-8"))) if "README.md" in files else set()
    if links - set(files):
        warnings.warn(f"README.md links {sorted(links - set(files))}, which this commit does not upload", stacklevel=2)

    api = HfApi(token=token)
    if create_repo:
        api.create_repo(repo_id, exist_ok=True, private=private)
        if revision is not None and revision != "main" and not revision.startswith("refs/"):
            api.create_branch(repo_id, branch=revision, exist_ok=True)
    return api.upload_folder(repo_id=repo_id, folder_path=str(folder), ignore_patterns=ignore_patterns,
                             commit_message=commit_message, revision=revision)


def push_to_hub(
    model: Any,
    repo_id: str,
    *,
    image_processor: Any = None,
    card: ModelCard | str | None = None,
    plots: Iterable[str | os.PathLike] = (),
    extra_files: Mapping[str, str | os.PathLike] | None = None,
    commit_message: str = "Upload hf_vq model",
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    create_repo: bool = True,
):
    """Save model, image processor, README.md and plots to a temporary folder and upload it in one commit
    (`push_folder`); returns its `CommitInfo`.

    Args:
        model: has `save_pretrained(directory)` writing safetensors (pickle files raise).
        repo_id: "name" or "namespace/name".
        image_processor: saved into the same folder (preprocessor_config.json).
        card: README.md; None renders one with `render_model_card(model, model_name=<repo name>, plots=plots)`.
        plots: image files uploaded as plots/<file name> (what `render_model_card` links absolute paths to).
        extra_files: path in repo → local file, uploaded as-is (no pickle files).
        commit_message, private, token, revision, create_repo: as in `push_folder`.

    Raises ValueError (bad repo_id / extra_files), FileNotFoundError (missing plot or extra file) and
    TypeError (no save_pretrained) before anything is written or sent; RuntimeError if saving produced a
    pickle file or no safetensors, before any network call.
    """
    _check_repo_id(repo_id)
    if not callable(getattr(model, "save_pretrained", None)):
        raise TypeError(f"model must have a save_pretrained(directory) method, got {type(model).__name__}")
    plot_paths = _check_plots(plots)
    extras: dict[str, Path] = {}
    for path_in_repo, local in dict(extra_files or {}).items():
        key = _check_path_in_repo(path_in_repo)
        if _is_pickle(key):
            raise ValueError(f"extra_files[{path_in_repo!r}]: pickle files are not uploaded (use safetensors)")
        if not Path(local).is_file():
            raise FileNotFoundError(f"extra_files[{path_in_repo!r}] not found: {local}")
        extras[key] = Path(local)
    clash = {f"{PLOTS_DIR}/{p.name}" for p in plot_paths} & set(extras)
    if clash:
        raise ValueError(f"extra_files {sorted(clash)} would overwrite plots of the same name")

    with tempfile.TemporaryDirectory(prefix="hf_vq_push_") as tmp:
        model.save_pretrained(tmp)
        if image_processor is not None:
            image_processor.save_pretrained(tmp)
        clash = set(extras) & set(files_to_upload(tmp))
        if clash:
            raise ValueError(f"extra_files {sorted(clash)} would overwrite files written by save_pretrained")
        if card is None:
            card = render_model_card(model, model_name=repo_id.split("/")[-1], repo_id=repo_id, plots=plot_paths,
                                     has_image_processor=image_processor is not None)
        save_model_card(card, tmp, plots=plot_paths)
        for key, local in extras.items():
            (Path(tmp) / key).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(local, Path(tmp) / key)
        return push_folder(tmp, repo_id, commit_message=commit_message, private=private, token=token,
                           revision=revision, create_repo=create_repo)


# ---------------------------------------------------------------------------------------------------- training runs
LOCAL_ONLY = ("checkpoints/", "tensorboard/", "debug/")
"""What stays local when a training run's folder is pushed: resumable state (pickled RNG and optimizer states), the
tracker's event files, the per-rank debug dumps."""


def retry_command(folder: str | os.PathLike, repo_id: str) -> str:
    """The command that uploads a finished training folder later (what a failed or skipped push prints)."""
    return f"python -m hf_vq.hub push {shlex.quote(str(folder))} {shlex.quote(repo_id)}"


def check_push_access(repo_id: str, token: str | bool | None = None) -> None:
    """Before a training run: can `repo_id` be pushed to at its end? RuntimeError naming the fix when offline
    mode is on, no token is found, the token is rejected or read-only, the namespace is neither the user's nor
    one of their organisations', or the Hub cannot be reached (`HfApi.whoami`, one request)."""
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

    _check_repo_id(repo_id)
    if constants.HF_HUB_OFFLINE:
        raise RuntimeError("HF_HUB_OFFLINE is on, so the upload at the end would fail; unset one of them")
    try:
        info = HfApi(token=token).whoami()
    except LocalTokenNotFoundError:
        raise RuntimeError("no Hugging Face token found: log in with `hf auth login` (or set HF_TOKEN)") from None
    except HfHubHTTPError as err:
        status = getattr(err.response, "status_code", None)
        if status == 401:
            raise RuntimeError("the Hugging Face token was rejected (401): log in again with `hf auth login`"
                               ) from None
        raise RuntimeError(f"the Hub answered {status or 'an error'} ({' '.join(str(err).split())[:200]})") from None
    except Exception as err:  # connection errors: their classes depend on the HTTP backend
        raise RuntimeError(f"the Hub cannot be reached ({type(err).__name__}: {' '.join(str(err).split())[:200]})"
                           ) from None
    role = ((info.get("auth") or {}).get("accessToken") or {}).get("role")
    if role == "read":
        raise RuntimeError("the Hugging Face token is read-only: log in with a write token (`hf auth login`)")
    namespace = repo_id.split("/")[0] if "/" in repo_id else info.get("name")
    allowed = {info.get("name"), *(org.get("name") for org in info.get("orgs") or [])}
    if namespace not in allowed:
        raise RuntimeError(f"user {info.get('name')!r} cannot create repos under {namespace!r} (theirs: "
                           f"{', '.join(sorted(n for n in allowed if n))})")


def main(argv: Iterable[str] | None = None) -> int:
    """`python -m hf_vq.hub push FOLDER REPO_ID`: upload a finished training folder in one commit (`push_folder`,
    leaving out `LOCAL_ONLY`)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m hf_vq.hub", description=main.__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    push = commands.add_parser("push", help="upload a finished training folder (model, card, plots, log), one commit")
    push.add_argument("folder", help="the run's output_dir")
    push.add_argument("repo_id", help="'name' or 'namespace/name'")
    push.add_argument("--private", action="store_true", help="create the repo private")
    push.add_argument("--revision", default=None, help="a branch (created if missing)")
    push.add_argument("--commit-message", default="Upload hf_vq model trained with hf_vq.training")
    args = parser.parse_args(None if argv is None else list(argv))
    try:
        info = push_folder(args.folder, args.repo_id, ignore_patterns=LOCAL_ONLY, commit_message=args.commit_message,
                           private=args.private or None, revision=args.revision)
    except Exception as err:  # a bad folder or repo id, no login, no network: one line, not a traceback
        reason = " ".join(f"{type(err).__name__}: {err}".split())
        print(f"error: push of {args.folder} to {args.repo_id} failed: {reason}", file=sys.stderr, flush=True)
        return 1
    print(f"pushed to {info.commit_url}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
