"""The wheel a user installs: it carries the model-card templates (package data of hf_vq) and its metadata
version is hf_vq.__version__ (one source, hf_vq/version.py)."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import hf_vq
from hf_vq.hub import TEMPLATE_NAMES

REPO = Path(__file__).resolve().parents[1]


def test_wheel_carries_the_model_card_templates(tmp_path):
    source = tmp_path / "src"  # a copy, so the build writes nothing into the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "hf_vq", source / "hf_vq", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
                    "-w", str(tmp_path / "dist"), str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("hf_vq-*.whl")
    assert wheel.name.startswith(f"hf_vq-{hf_vq.__version__}-")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "site")
    assert {f"hf_vq/model_cards/{name}.md.j2" for name in TEMPLATE_NAMES} <= names
    assert {p.relative_to(REPO).as_posix() for p in (REPO / "hf_vq/recipes").rglob("*.yaml")} <= names
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
