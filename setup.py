"""Packaging glue: the wheel carries the model-card templates.

The templates live in the repository's top-level `model_cards/` (one obvious place, next to `configs/`);
`hf_vq.hub` finds them there in a source checkout or an editable install, and as `hf_vq/model_cards/` in
an installed wheel, where this build step copies them. Everything else is in pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

TEMPLATES = Path(__file__).resolve().parent / "model_cards"


class BuildPyWithModelCards(build_py):
    def run(self):
        super().run()
        if self.editable_mode:  # an editable install reads model_cards/ in place
            return
        target = Path(self.build_lib) / "hf_vq" / "model_cards"
        target.mkdir(parents=True, exist_ok=True)
        for template in sorted(TEMPLATES.glob("*.md.j2")):
            shutil.copy2(template, target / template.name)


setup(cmdclass={"build_py": BuildPyWithModelCards})
