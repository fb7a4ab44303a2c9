"""`python training/reproduce.py --smoke` runs end to end and writes a complete results markdown.

Only the structure is checked (every table row present with finite numbers, figures written), never the
values: the smoke version trains each row for a few steps only.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from hf_vq.experiments.ablations import NU_ROWS, TABLE3_ROWS, TABLE3_SECOND_DATASET  # noqa: E402

NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?|nan|inf", re.IGNORECASE)


def _row_cells(markdown: str, name: str) -> list[list[str]]:
    """Cells of every table row whose first cell is `name`."""
    rows = []
    for line in markdown.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if cells and cells[0] == name:
                rows.append(cells[1:])
    return rows


def _section(markdown: str, title: str) -> str:
    """The text of the `## title...` section (up to the next `## ` heading)."""
    start = markdown.index("## " + title)
    end = markdown.find("\n## ", start + 3)
    return markdown[start:] if end < 0 else markdown[start:end]


def _assert_finite(cells: list[str], where: str) -> None:
    joined = " ".join(cells)
    assert "pending" not in joined, f"{where}: unfinished cells {cells}"
    values = [v for c in cells for v in NUMBER.findall(c)]
    assert values, f"{where}: no numbers in {cells}"
    for v in values:
        assert math.isfinite(float(v)), f"{where}: non-finite value {v} in {cells}"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_reproduce_smoke(tmp_path):
    out = tmp_path / "reproduce"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "training" / "reproduce.py"), "--smoke", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    md_path = out / "results.md"
    assert md_path.is_file()
    md = md_path.read_text()
    assert "Status: **complete**" in md

    t3, nu, toys = _section(md, "Table 3"), _section(md, "ν under"), _section(md, "Figure 3")
    for name, *_ in TABLE3_ROWS:  # every row on the patches, the listed ones on Fashion-MNIST too
        rows = _row_cells(t3, name)
        expected = 2 if name in TABLE3_SECOND_DATASET else 1
        assert len(rows) == expected, f"Table 3 row {name!r}: expected {expected}, got {len(rows)}"
        for cells in rows:
            _assert_finite([c for c in cells[:-1] if c != "—"], f"Table 3 {name}")  # last cell: seeds
    for name, _ in NU_ROWS:
        rows = _row_cells(nu, name)
        assert rows, f"ν row {name!r} missing"
        _assert_finite(rows[0][:-1], f"ν {name}")
    for name in ("no_vq", "joint", "alternated", "synchronized"):
        assert _row_cells(toys, name), f"toy row {name!r} missing"
    assert "| rank1 | EMA full affine |" in toys and "| isotropic | standard |" in toys
    for figure in ("figure3_toy.png", "figure10_toy.png", "table3_mse_vs_perplexity.png"):
        assert (out / "figures" / figure).is_file(), figure
