"""The wheel a user installs: it carries the model-card templates (package data of hf_vq) and its metadata
version is hf_vq.__version__ (one source, hf_vq/version.py)."""

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
