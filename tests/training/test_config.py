"""Configuration: YAML files, command-line overrides, and errors that name the key before anything runs."""

import json

import pytest
import yaml

import hf_vq
from hf_vq import VQVAEConfig, VQViTConfig
from hf_vq.training.checkpoint import MARKER, resolve_resume
from hf_vq.training.config import ConfigError, KeyTable, build_config, load_config, read_yaml, recipe_names
from hf_vq.training.runtime import build_model_config

from . import CONFIGS

VAE = {"task": "vqvae"}


def test_yaml_then_cli_overrides_with_dotted_tails():
    base = {"task": "vqvae", "train": {"lr": "1e-4", "betas": [0.8, 0.9]}, "model": {"quantizer": {"beta": 0.9}}}
    cfg = build_config("vqvae", VQVAEConfig, base=base, argv=[
        "--lr", "1e-3", "--quantizer.beta", "0.5", "--set", "train.batch_size=8", "--betas=[0.7, 0.8]",
        "--optimization", "alternated", "--inner_steps", "4", "--model.latent_channels", "16"])
    assert cfg.train.lr == pytest.approx(1e-3) and isinstance(cfg.train.lr, float)
    assert cfg.model["quantizer"]["beta"] == 0.5 and cfg.model["latent_channels"] == 16
    # every other model key is the config class's default: the same model as from the two settings alone
    expected = VQVAEConfig(latent_channels=16, quantizer={"beta": 0.5}).to_dict()
    assert build_model_config(VQVAEConfig, cfg.model).to_dict() == expected
    assert cfg.train.batch_size == 8 and cfg.train.betas == [0.7, 0.8]
    assert (cfg.train.optimization, cfg.train.inner_steps) == ("alternated", 4)


def test_yaml_exponent_without_dot_is_a_float():  # PyYAML reads `1e-4` as a string
    cfg = build_config("vqvae", VQVAEConfig, base={"task": "vqvae", "train": {"lr": "1e-4", "weight_decay": "3e-2"}})
    assert cfg.train.lr == pytest.approx(1e-4) and cfg.train.weight_decay == pytest.approx(0.03)


def test_flags_without_value():
    cfg = build_config("vqvae", VQVAEConfig, base=VAE, argv=["--resume", "--debug_dump_rank_state"])
    assert cfg.resume == "latest" and cfg.debug_dump_rank_state is True


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["--lrr", "1"], "unknown config key 'lrr'; did you mean 'train.lr'"),
        (["--quantizer.comitment_weight", "1"], "did you mean 'model.quantizer.commitment_weight'"),
        (["--batch_sise", "3"], "did you mean 'train.batch_size'"),
        (["--train.batch_size", "x"], """train.batch_size": Not of type PositiveInt: invalid literal"""),
        (["--batch_size", "0"], 'train.batch_size": Not of type PositiveInt: 0 does not conform to restriction v>0'),
        (["--keep_last", "0"], """checkpoint.keep_last": Not of type PositiveInt: 0 does not conform"""),
        (["--betas", "[0.9, 1.5]"], "train.betas must be two numbers in [0, 1), got [0.9, 1.5]"),
        (["--epochs", "0"], "train.epochs must be > 0 (or set train.max_steps)"),
        (["--optimization", "alternating"], "train.optimization\": Expected a typing.Literal['joint', 'alternated']"),
        (["--inner_steps", "2"], "needs train.optimization: alternated"),
        (["--quantizer.dim", "3"], "unknown config key 'quantizer.dim'"),
        (["--model", "3"], "'model' is a section"),
        (["--lr"], "--lr needs a value"),
    ],
)
def test_bad_command_line_names_the_key(argv, expected):
    with pytest.raises(ConfigError) as err:
        build_config("vqvae", VQVAEConfig, base=VAE, argv=argv)
    assert expected in str(err.value)


def test_ambiguous_tail_lists_the_candidates():
    table = KeyTable(VQVAEConfig)
    table.keys["eval.lr"] = table.keys["train.lr"]  # no shipped key is ambiguous: make `lr` so
    with pytest.raises(ConfigError, match="ambiguous: it could be eval.lr, train.lr"):
        table.resolve("lr", "command line")


def test_unknown_yaml_key_before_anything_runs(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("task: vqvae\ntrain:\n  lerning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'train.lerning_rate'"):
        build_config("vqvae", VQVAEConfig, base=read_yaml(path), source=str(path))
    with pytest.raises(ConfigError,
                       match=r"model.quantizer.codebook_sise'; did you mean 'model.quantizer.codebook_size'"):
        build_config("vqvae", VQVAEConfig, base={"task": "vqvae", "model": {"quantizer": {"codebook_sise": 8}}})


def test_task_mismatch_and_labels_set_by_the_script():
    with pytest.raises(ConfigError, match="train_vq_vit.py"):
        build_config("vqvae", VQVAEConfig, base={"task": "vq_vit"})
    with pytest.raises(ConfigError, match="set by the training script"):
        build_config("vq_vit", VQViTConfig, base={"task": "vq_vit", "model": {"num_labels": 3}})


def test_load_config_exits_with_status_2_and_the_message(capsys):
    with pytest.raises(SystemExit) as exit_:
        load_config(["--quantizer.betta", "0.9"], task="vqvae", model_config_class=VQVAEConfig, defaults=VAE)
    assert exit_.value.code == 2
    assert "did you mean 'model.quantizer.beta'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        load_config(["--config", "missing.yaml"], task="vqvae", model_config_class=VQVAEConfig, defaults=VAE)
    assert exit_.value.code == 2 and "not found" in capsys.readouterr().err


def test_model_values_are_checked_by_the_model_config():
    cfg = build_config("vqvae", VQVAEConfig, base=VAE, argv=["--quantizer.beta", "1.5"])
    with pytest.raises(ConfigError, match="beta must be in"):
        build_model_config(VQVAEConfig, cfg.model)


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_shipped_configs_parse_and_build_their_model_config(name):
    tree = read_yaml(CONFIGS / name)
    config_class = VQViTConfig if tree["task"] == "vq_vit" else VQVAEConfig
    cfg = build_config(tree["task"], config_class, base=tree, source=name)
    model_config = build_model_config(config_class, cfg.model)
    assert model_config.quantizer["codebook_size"] >= 2


def test_config_takes_a_recipe_name_or_a_path(tmp_path, monkeypatch):
    by_name = build_config("vqvae", VQVAEConfig, argv=["--config", "demo_vqvae"])
    by_path = build_config("vqvae", VQVAEConfig, argv=["--config", str(CONFIGS / "demo_vqvae.yaml")])
    assert by_name == by_path and by_name.output_dir == "outputs/demo_vqvae"
    assert {"vqvae_default", "vq_vit_default", "demo_vqvae"} <= set(recipe_names())
    monkeypatch.chdir(tmp_path)  # a file of that name wins over the recipe
    (tmp_path / "demo_vqvae").write_text("task: vqvae\noutput_dir: mine\n")
    assert build_config("vqvae", VQVAEConfig, argv=["--config", "demo_vqvae"]).output_dir == "mine"
    with pytest.raises(ConfigError, match="'demo' not found, and it is not the name of a recipe .*demo_vqvae"):
        build_config("vqvae", VQVAEConfig, argv=["--config", "demo"])
    with pytest.raises(ConfigError, match="recipe 'tiny_vq_vit': this config is for task 'vq_vit'"):
        build_config("vqvae", VQVAEConfig, argv=["--config", "tiny_vq_vit"])


def test_paper_recipes_hold_the_tables_values():
    vit = build_config("vq_vit", VQViTConfig, base=read_yaml(CONFIGS / "paper_vit_tiny_imagenet100.yaml"))
    t = vit.train
    assert (t.lr, t.weight_decay, t.betas, t.epochs, t.scheduler, t.warmup_epochs) == \
        (2e-4, 0.03, [0.9, 0.95], 90, "cosine", 10)
    q = build_model_config(VQViTConfig, vit.model).quantizer
    assert (q.commitment_weight, q.beta, q.sync_nu, q.affine_lr_scale, q.codebook_size, q.kmeans_init) == \
        (5, 0.995, 0.01, 10, 1024, True)
    m = build_model_config(VQViTConfig, vit.model)
    assert (m.hidden_size, m.num_hidden_layers, m.num_attention_heads, m.patch_size, m.quantizer_layer) == \
        (192, 12, 3, 16, 6)
    vae = build_config("vqvae", VQVAEConfig, base=read_yaml(CONFIGS / "paper_vqvae_cifar10.yaml"))
    t = vae.train
    assert (t.lr, t.weight_decay, t.betas, t.epochs, t.scheduler, t.warmup_epochs) == \
        (1e-4, 1e-4, [0.9, 0.95], 90, "cosine", 10)
    assert vae.data.source == "uoft-cs/cifar10" and vae.data.augment == "none"
    m = build_model_config(VQVAEConfig, vae.model)
    assert (m.image_size, m.quantizer.codebook_size, m.block_out_channels[0]) == (32, 1024, 64)


def test_saved_config_round_trips_and_names_its_release(tmp_path):
    base = {"task": "vqvae", "train": {"lr": 2e-4}, "model": {"quantizer": {"beta": 0.9}}}
    cfg = build_config("vqvae", VQVAEConfig, base=base)
    path = tmp_path / "training_config.yaml"
    path.write_text(cfg.to_yaml())
    saved = read_yaml(path)
    assert saved["hf_vq_version"] == hf_vq.__version__ and list(saved)[0] == "hf_vq_version"
    assert build_config("vqvae", VQVAEConfig, base=saved).to_dict() == cfg.to_dict()


def test_config_from_a_newer_release():
    newer = {"hf_vq_version": "99.0", "task": "vqvae", "train": {"lr": 2e-4}}
    assert build_config("vqvae", VQVAEConfig, base=newer).train.lr == pytest.approx(2e-4)  # every key known: runs
    with pytest.raises(ConfigError, match=r"unknown config key 'train.lion_beta'.*written by hf_vq 99.0, newer than "
                                          rf"the installed {hf_vq.__version__}: upgrade hf_vq"):
        build_config("vqvae", VQVAEConfig, base={**newer, "train": {"lion_beta": 0.9}})
    with pytest.raises(ConfigError, match=r"unknown config key 'train.lion_beta'") as error:
        build_config("vqvae", VQVAEConfig,
                     base={"hf_vq_version": hf_vq.__version__, "task": "vqvae", "train": {"lion_beta": 0.9}})
    assert "newer" not in str(error.value)  # a typo in a config of this release is just a typo
    with pytest.raises(ConfigError, match=r"hf_vq_version: 'next' is not a version number"):
        build_config("vqvae", VQVAEConfig, base={"hf_vq_version": "next", "task": "vqvae"})


def test_resume_refuses_a_checkpoint_of_a_newer_release(tmp_path):
    folder = tmp_path / "checkpoints" / "step_000000004"
    folder.mkdir(parents=True)
    (folder / MARKER).write_text(json.dumps({"step": 4, "hf_vq_version": "99.0"}))
    for resume in ("latest", "auto", str(folder)):
        with pytest.raises(ConfigError, match=r"written by hf_vq 99.0, newer than the installed .*hf_vq>=99.0"):
            resolve_resume(resume, tmp_path)
    (folder / MARKER).write_text(json.dumps({"step": 4, "hf_vq_version": hf_vq.__version__}))
    assert resolve_resume("auto", tmp_path) == folder


def alpha(cfg) -> float:
    return cfg.model["quantizer"]["commitment_weight"]


def test_a_config_of_hf_vq_0_1_gets_alpha_in_this_releases_units(tmp_path, caplog):
    """0.1's α weighted ½‖z_e − z_q‖² summed over the D latent channels; since 0.2 it weights the element-wise
    mean (A.1): the same loss is α·D/2 (hf_vq.models.versioning)."""
    saved = {"hf_vq_version": "0.1.3", "task": "vqvae",
             "model": {"latent_channels": 32, "quantizer": {"commitment_weight": 1.6}}}
    path = tmp_path / "training_config.yaml"
    path.write_text(yaml.safe_dump(saved))
    assert alpha(build_config("vqvae", VQVAEConfig, argv=["--config", str(path)])) == pytest.approx(1.6 * 32 / 2)
    assert "written by hf_vq 0.1.3" in caplog.text and str(path) in caplog.text
    # D from the model config class's default when the file does not set it (VQVAEConfig: latent_channels 64)
    saved["model"] = {"quantizer": {"commitment_weight": 1.6}}
    assert alpha(build_config("vqvae", VQVAEConfig, base=saved)) == pytest.approx(1.6 * 64 / 2)
    # D of a ViT is its hidden_size
    vit = {"hf_vq_version": "0.1.0", "task": "vq_vit",
           "model": {"hidden_size": 48, "quantizer": {"commitment_weight": 2.0}}}
    assert alpha(build_config("vq_vit", VQViTConfig, base=vit)) == pytest.approx(48.0)
    # an α a 0.1 file does not set is this release's default; files of 0.2 on, and hand-written ones, are as written
    saved["model"] = {"latent_channels": 32}
    assert alpha(build_config("vqvae", VQVAEConfig, base=saved)) == pytest.approx(5.0)
    for version in ({"hf_vq_version": hf_vq.__version__}, {}):
        tree = {**version, "task": "vqvae", "model": {"quantizer": {"commitment_weight": 1.6}}}
        assert alpha(build_config("vqvae", VQVAEConfig, base=tree)) == pytest.approx(1.6)


def run_cli(capsys, argv, defaults):
    with pytest.raises(SystemExit) as exit_:
        load_config(argv, task="vqvae", model_config_class=VQVAEConfig, defaults=defaults, script="train_vqvae.py")
    assert exit_.value.code == 0
    return capsys.readouterr().out


def test_help_lists_every_key_on_one_line_with_this_runs_value(capsys):
    script_defaults = {"task": "vqvae", "train": {"lr": 0.00123}, "model": {"latent_channels": 24}}
    lines = run_cli(capsys, ["--help"], script_defaults).splitlines()
    assert lines[0].startswith("usage: train_vqvae.py [--config RECIPE|FILE]")
    by_key = {line.split()[0]: line for line in lines if line.startswith("  --")}
    assert set(by_key) == {f"--{key}" for key in KeyTable(VQVAEConfig).keys}  # every key, one line each
    assert " ".join(by_key["--train.lr"].split()) == "--train.lr 0.00123 (float > 0) peak learning rate of AdamW."
    assert " ".join(by_key["--model.latent_channels"].split()) == (
        "--model.latent_channels 24 (int) Channels of the latent grid, which is also the codebook dimension.")
    assert " ".join(by_key["--model.quantizer.sync_nu"].split()) == (
        "--model.quantizer.sync_nu 0.01 (float) ν of the synchronized update (eq 21).")
    assert "('joint'|'alternated')" in by_key["--train.optimization"]
    assert by_key["--data.max_test_samples"].split()[1:4] == ["null", "(int", ">"]
    # --config NAME: the recipe's values
    lines = run_cli(capsys, ["--config", "demo_vqvae", "--help"], script_defaults).splitlines()
    assert "recipe 'demo_vqvae' over the built-in defaults" in "\n".join(lines)
    assert any(line.split()[:2] == ["--train.epochs", "12"] for line in lines)


def test_help_model_keys_file_matches_the_model_config_classes():
    """--help reads the model keys from model_keys.json (no torch); regenerate it with
    `python -c "from hf_vq.training.config import write_model_keys; write_model_keys()"`."""
    from hf_vq.training.config import MODEL_KEYS_FILE, describe_keys, model_keys
    from hf_vq.training.tasks import TASKS

    saved = json.loads(MODEL_KEYS_FILE.read_text())
    live = json.loads(json.dumps({name: describe_keys(model_keys(task.config_class)) for name, task in TASKS.items()}))
    assert saved == live


def test_print_config_is_the_resolved_config(capsys, tmp_path):
    argv = ["--print_config", "--lr", "0.5", "--train", "{batch_size: 3}"]
    printed = yaml.safe_load(run_cli(capsys, argv, {"task": "vqvae"}))
    assert printed["train"]["lr"] == 0.5 and printed["train"]["batch_size"] == 3
    assert printed["model"]["quantizer"]["beta"] == 0.995  # VQVAEConfig's paper default
    path = tmp_path / "printed.yaml"
    path.write_text(yaml.safe_dump(printed))
    assert build_config("vqvae", VQVAEConfig, argv=["--config", str(path)]).to_dict() == \
        build_config("vqvae", VQVAEConfig, base=VAE, argv=["--lr", "0.5", "--batch_size", "3"]).to_dict()


def test_a_config_file_replaces_the_scripts_defaults(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("task: vqvae\ntrain:\n  batch_size: 5\n")
    script_defaults = {"task": "vqvae", "train": {"lr": 0.123}, "model": {"latent_channels": 8}}
    cfg = build_config("vqvae", VQVAEConfig, base=script_defaults, argv=["--config", str(path), "--epochs", "2"])
    assert (cfg.train.batch_size, cfg.train.lr, cfg.train.epochs, cfg.model["latent_channels"]) == (5, 1e-4, 2.0, 64)
    with pytest.raises(ConfigError, match=r"^the script's defaults: .*train.lr"):  # checked too
        build_config("vqvae", VQVAEConfig, base={"task": "vqvae", "train": {"lr": "fast"}},
                     source="the script's defaults")


def test_entry_point_names_its_tasks(capsys):
    from hf_vq.train import main, parse_task

    assert parse_task(["vq-vit", "--lr", "1"]) == parse_task(["vq_vit"]) == "vq_vit"
    assert parse_task(["vqvae"]) == "vqvae"
    with pytest.raises(SystemExit) as exit_:
        main(["vae"])
    assert exit_.value.code == 2
    assert "error: unknown task 'vae'; choose one of: vqvae, vq-vit" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["vqvae", "--config", "nope", "--help"])
    assert exit_.value.code == 2 and "'nope' not found, and it is not the name of a recipe" in capsys.readouterr().err
