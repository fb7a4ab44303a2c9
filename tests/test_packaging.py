"""The wheel a user installs: its package data (model-card templates, recipes, --help's model keys, the digits), its
metadata version hf_vq.__version__ (one source, hf_vq/version.py), and a new user's first commands from a fresh
virtual environment outside the source tree; `import hf_vq` and --help without torch."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import hf_vq
from hf_vq.hub import TEMPLATE_NAMES

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel `pip wheel` builds from a copy of the sources (so the build writes nothing into the checkout)."""
    tmp_path = tmp_path_factory.mktemp("wheel")
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "hf_vq", source / "hf_vq", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
                    "-w", str(tmp_path / "dist"), str(source)], check=True, capture_output=True, timeout=300)
    (built,) = (tmp_path / "dist").glob("hf_vq-*.whl")
    return built


def test_wheel_carries_the_model_card_templates(tmp_path, wheel):
    assert wheel.name.startswith(f"hf_vq-{hf_vq.__version__}-")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "site")
    assert {f"hf_vq/model_cards/{name}.md.j2" for name in TEMPLATE_NAMES} <= names
    assert {p.relative_to(REPO).as_posix() for p in (REPO / "hf_vq/recipes").rglob("*.yaml")} <= names
    assert {"hf_vq/training/model_keys.json", "hf_vq/data/files/digits.npz"} <= names
    assert "hf_vq/quantization/kernels/vq_cpu.cpp" in names  # the native kernels build from it on first use
    assert not [n for n in names if n.startswith(("tests/", "training/", "benchmarks/"))]

    # the installed layout finds its templates (no repository around it)
    child = (
        "import sys; sys.meta_path[:] = [f for f in sys.meta_path "
        "if '__editable__' not in getattr(f, '__module__', '')];"
        f"sys.path.insert(0, {str(tmp_path / 'site')!r}); import hf_vq.hub as h;"
        "print(h.__file__); print(*[h.find_template(n) for n in h.TEMPLATE_NAMES], sep='\\n')"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", child], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for line in result.stdout.split():
        assert Path(line).is_relative_to(tmp_path / "site"), result.stdout


def run_python(code: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_import_and_help_load_no_torch(tmp_path):
    """`import hf_vq` and `python -m hf_vq.train TASK --help` import neither torch nor transformers (that is what
    makes --help fast), and --help lists the default recipe's values."""
    code = (
        "import runpy, sys, time; start = time.perf_counter(); import hf_vq; "
        "print('import', sorted(m for m in ('torch', 'transformers') if m in sys.modules)); "
        "sys.argv = ['hf_vq.train', 'vq-vit', '--help']\n"
        "try: runpy.run_module('hf_vq.train', run_name='__main__')\n"
        "except SystemExit as e: assert e.code == 0\n"
        "print('help', sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    out = run_python(code, tmp_path).stdout
    assert "import []" in out and "help []" in out, out
    assert "usage: python -m hf_vq.train vq-vit" in out
    assert any(line.split()[:2] == ["--train.epochs", "40"] for line in out.splitlines())  # vq_vit_default.yaml


def test_lazy_import_still_registers_the_auto_classes(tmp_path):
    """`import hf_vq` (lazy) then transformers' Auto classes load a saved model as hf_vq's own class (not remote
    code), whichever of the two is imported first; touching a model class registers them too."""
    save = (
        "from hf_vq import VQViTConfig, VQViTForImageClassification; "
        "VQViTForImageClassification(VQViTConfig(image_size=8, patch_size=4, hidden_size=16, num_hidden_layers=2, "
        "num_attention_heads=2, intermediate_size=32, num_labels=3)).save_pretrained('vit')"
    )
    run_python(save, tmp_path)
    for first, second in (("import hf_vq", "from transformers import AutoModelForImageClassification as A"),
                          ("from transformers import AutoModelForImageClassification as A", "import hf_vq")):
        load = f"{first}; {second}; m = A.from_pretrained('vit'); print(type(m).__module__)"
        assert run_python(load, tmp_path).stdout.strip() == "hf_vq.models.vq_vit.modeling_vq_vit"
    load = "import hf_vq; from transformers import AutoConfig as A; print(type(A.from_pretrained('vit')).__module__)"
    assert run_python(load, tmp_path).stdout.strip().startswith("hf_vq.models.vq_vit")


def venv_with_the_wheel(wheel: Path, venv: Path) -> Path:
    """A fresh virtual environment with the wheel installed (no source tree on its path). Its dependencies come
    from this test environment's site-packages through a .pth line (installed by `make install`: torch==2.13.0
    first, then hf_vq's requirements), which keeps the test within seconds instead of minutes of unpacking ~2 GB;
    the wheel's requirements are checked against them below. Returns the venv's python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    (site,) = venv.glob("lib/python*/site-packages")
    shared = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "test_environment.pth").write_text("".join(f"{path}\n" for path in shared))
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    "--no-index", "--no-compile", str(wheel)], check=True, capture_output=True, timeout=300)
    return python


@pytest.mark.slow
def test_a_new_user_installs_the_wheel_and_trains_both_defaults(tmp_path, wheel):
    """From the wheel in a fresh venv, in an empty folder outside the tree, with an empty data cache: --help
    (console script), then both no-argument trainings for a few steps (`python -m hf_vq.train vqvae`,
    `accelerate launch -m hf_vq.train vq-vit`), then `import hf_vq; AutoModel.from_pretrained` on their outputs."""
    python = venv_with_the_wheel(wheel, tmp_path / "venv")
    work = tmp_path / "work"
    work.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "HF_", "VIRTUAL_ENV"))}
    env.update(HF_VQ_DATA_DIR=str(tmp_path / "data"), HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1",
               HF_DATASETS_DISABLE_PROGRESS_BARS="1", OMP_NUM_THREADS="1", PATH=f"{python.parent}:{env['PATH']}")

    def run(*command: str, timeout: float = 300) -> str:
        result = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, f"{command} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        return result.stdout + result.stderr

    # the wheel's requirements hold, and hf_vq is the installed wheel, not the checkout
    check = ("import importlib.metadata as m, hf_vq; from packaging.requirements import Requirement; "
             "bad = [r for r in map(Requirement, m.requires('hf_vq')) if not r.marker "
             "and m.version(r.name) not in r.specifier]; print(hf_vq.__file__); assert not bad, bad")
    assert Path(run(str(python), "-c", check).split()[0]).is_relative_to(tmp_path / "venv")

    out = run(str(python.parent / "hf-vq-train"), "vqvae", "--help")
    assert any(line.split()[:2] == ["--data.source", "offline:patches"] for line in out.splitlines())
    steps = ["--max_steps", "3", "--eval_every", "0", "--log_every", "1", "--progress_bar", "false"]
    out = run(str(python), "-m", "hf_vq.train", "vqvae", *steps)
    assert "=== vqvae: 3 optimizer steps" in out
    out = run(str(python), "-m", "accelerate.commands.launch", "--num_processes", "1", "--cpu", "-m", "hf_vq.train",
              "vq-vit", *steps)
    assert "=== vq_vit: 3 optimizer steps" in out
    assert {p.name for p in (tmp_path / "data").iterdir()} == {"patches", "digits"}  # built from nothing
    for name in ("vqvae_default", "vq_vit_default"):
        results = json.loads((work / "outputs" / name / "eval_results.json").read_text())
        assert results["steps"] == 3 and results["num_processes"] == 1
    load = ("import hf_vq; from transformers import AutoModel, AutoModelForImageClassification as C; "
            "print('loaded', type(AutoModel.from_pretrained('outputs/vqvae_default')).__name__, "
            "type(C.from_pretrained('outputs/vq_vit_default')).__name__)")
    assert "loaded VQVAEModel VQViTForImageClassification" in run(str(python), "-c", load)
