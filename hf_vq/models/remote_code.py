"""Writing a model folder that loads with `trust_remote_code=True` where `hf_vq` is not installed.

How transformers loads remote code: config.json's `auto_map` names `<module>.<Class>`; transformers copies
`<module>.py` and every file it imports with `from .x import y`, recursively, into one flat package and
imports it from there. Nothing else is followed (`from ..x`, absolute `hf_vq.x`, `__init__.py`).

Our sources live in a package tree (`hf_vq/models/vq_vit/`, `hf_vq/models/`, `hf_vq/quantization/`), so
the modeling files reach the quantizer with multi-level relative imports (`from ...quantization.layer
import VectorQuantizer`). Rather than duplicating the quantizer next to each model, saving a config
flattens the tree: starting from the config and modeling files, every file reached by a relative import
is copied into the save directory, and only the import lines that are not already single-dot are
rewritten to `from .<file> import ...`. The quantization files already import each other with single
dots, so they are copied byte for byte. Because this runs inside `config.save_pretrained` (which
`model.save_pretrained` calls), the files are in place before a `push_to_hub=True` upload, and a model
loaded as remote code re-saves the same way (there the tree is already flat and nothing is rewritten).

In the package, `register_for_auto_class` is a no-op: transformers' own copier would follow
`from ...quantization.layer` to a non-existent `vq_vit/..quantization.layer.py`, and it writes a single
`auto_map` entry, while we always write AutoConfig, AutoModel and the task class. (Classes loaded as remote
code keep transformers' behaviour: their folder is flat.) After writing, the folder is checked against
transformers' own import follower, so a file it would not copy (one reached only through `from . import
x`, as `layer.py` reaches `distributed.py`, which works only because `affine.py` also imports it with
`from .distributed import ...`) fails at save time rather than at load time.
"""

from __future__ import annotations

import ast
import os
import re
import sys
from pathlib import Path

_FROM_LINE = re.compile(r"^(\s*from\s+)\.+[\w.]*(\s+import\b)")


def _resolve(file: Path, level: int, module: str | None, names: list[str]) -> list[tuple[Path, bool]]:
    """(target file, needs rewrite) for one relative `from ... import ...` in `file`."""
    base = file.parent
    for _ in range(level - 1):
        base = base.parent
    if module is not None:
        targets = [base.joinpath(*module.split(".")).with_suffix(".py")]
        rewrite = level > 1 or "." in module
    else:  # `from . import x, y`: each name is a module
        targets = [base / f"{name}.py" for name in names]
        rewrite = level > 1
    for target in targets:
        if not target.is_file():
            raise FileNotFoundError(
                f"{file.name} imports {'.' * level}{module or ''} -> {target}, which is not a module file; remote "
                "code can only carry plain module files (not packages)"
            )
    return [(target, rewrite) for target in targets]


def module_closure(entries: list[Path]) -> dict[Path, set[int]]:
    """Every file reached from `entries` by relative imports -> line numbers of imports to rewrite."""
    found: dict[Path, set[int]] = {}
    todo = [Path(e).resolve() for e in entries]
    while todo:
        file = todo.pop()
        if file in found:
            continue
        found[file] = set()
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"), filename=str(file))):
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                for target, rewrite in _resolve(file, node.level, node.module, [a.name for a in node.names]):
                    if rewrite:
                        found[file].add(node.lineno)
                    todo.append(target.resolve())
    return found


def _flatten_source(file: Path, lines_to_rewrite: set[int]) -> str:
    tree = ast.parse(file.read_text(encoding="utf-8"))
    lines = file.read_text(encoding="utf-8").splitlines(keepends=True)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.lineno in lines_to_rewrite:
            target = f".{node.module.rsplit('.', 1)[-1]}" if node.module else "."
            line = lines[node.lineno - 1]
            new, count = _FROM_LINE.subn(lambda m: f"{m.group(1)}{target}{m.group(2)}", line, count=1)
            if count != 1:
                raise ValueError(
                    f"{file.name}:{node.lineno}: write `from <module> import` on one line so it can be rewritten"
                )
            lines[node.lineno - 1] = new
    return "".join(lines)


def write_remote_code(save_directory: str | os.PathLike, entry_files: list[Path]) -> list[Path]:
    """Copy `entry_files` and everything they import relatively into `save_directory`, flattened."""
    save_directory = Path(save_directory)
    flat: dict[str, tuple[Path, str]] = {}
    for file, rewrite_lines in module_closure(entry_files).items():
        source = _flatten_source(file, rewrite_lines)
        # The same module may be reached from two folders (a remote model's cache and save_directory).
        if file.name in flat and flat[file.name][1] != source:
            raise ValueError(f"Two different remote-code files are named {file.name}: {flat[file.name][0]} and {file}")
        flat[file.name] = (file, source)
    written = []
    for name, (file, source) in flat.items():
        destination = save_directory / name
        if destination.resolve() != file:  # re-saving a flat folder into itself: nothing to copy
            destination.write_text(source, encoding="utf-8")
        written.append(destination)

    # transformers copies only what its regex follows; make sure that covers every file each entry needs.
    from transformers.dynamic_module_utils import get_relative_import_files

    for entry in entry_files:
        needed = {save_directory / f.name for f in module_closure([entry])}
        followed = {Path(f) for f in get_relative_import_files(save_directory / Path(entry).name)}
        followed.add(save_directory / Path(entry).name)
        missing = sorted(f.name for f in needed - followed)
        if missing:
            raise RuntimeError(
                f"transformers would not copy {missing} when loading {Path(entry).name} as remote code: import them "
                "with `from .module import name` somewhere in the chain"
            )
        # e.g. a docstring line its regex takes for an import
        phantom = sorted(f.name for f in followed if not f.is_file())
        if phantom:
            raise RuntimeError(f"transformers would look for non-existent {phantom} when loading {Path(entry).name}")
    return written


def _skip_registration_in_package(cls, auto_class, register) -> None:
    # transformers calls register_for_auto_class on classes it loaded as remote code: there the files are flat
    # and its copier works. In the package tree its copier would chase `from ...quantization` to a missing
    # file, and our save_pretrained writes the complete auto_map anyway, so registering is skipped there.
    if any(module_closure([Path(sys.modules[cls.__module__].__file__)]).values()):
        return
    register(auto_class)


class RemoteCodeConfigMixin:
    """Config mixin: `save_pretrained` also writes the flattened code and a complete `auto_map`.

    Subclasses set `remote_code_auto_map` ({"AutoConfig": "configuration_x.XConfig", "AutoModel": ...});
    the modules it names are looked up next to the config's own source file, then in its parent folder.
    """

    remote_code_auto_map: dict[str, str] = {}

    @classmethod
    def register_for_auto_class(cls, auto_class="AutoConfig"):
        _skip_registration_in_package(cls, auto_class, super().register_for_auto_class)

    def remote_code_entry_files(self, save_directory: str | os.PathLike) -> dict[str, Path]:
        """{module name: source file} for the modules `remote_code_auto_map` names."""
        here = Path(sys.modules[type(self).__module__].__file__).parent
        entries = {}
        for module in dict.fromkeys(reference.split(".")[0] for reference in self.remote_code_auto_map.values()):
            source = here / f"{module}.py"
            if not source.is_file():  # a module shared by the models (the image processor) sits one level up
                source = here.parent / f"{module}.py"
            if not source.is_file():
                # Loaded as remote code, transformers caches each auto_map module in its own folder; for a remote
                # model its custom_object_save has just copied the modeling file into save_directory.
                source = Path(save_directory) / f"{module}.py"
            if source.is_file():
                entries[module] = source
        return entries

    def save_pretrained(self, save_directory: str | os.PathLike, push_to_hub: bool = False, **kwargs):
        if push_to_hub:
            # transformers uploads only files written after its own timestamp snapshot, which the code files
            # would predate: save everything locally, then push the folder through push_to_hub's fresh save.
            repo_id = kwargs.pop("repo_id", Path(save_directory).name)
            self.save_pretrained(save_directory)
            return self.push_to_hub(repo_id, **kwargs)
        os.makedirs(save_directory, exist_ok=True)
        entries = self.remote_code_entry_files(save_directory)
        write_remote_code(save_directory, list(entries.values()))
        auto_map = {k: v for k, v in self.remote_code_auto_map.items() if v.split(".")[0] in entries}
        self.auto_map = {**(getattr(self, "auto_map", None) or {}), **auto_map}
        return super().save_pretrained(save_directory, **kwargs)


class RemoteCodeModelMixin:
    """Model mixin: keeps transformers' own copier (`register_for_auto_class`) out of the package tree."""

    @classmethod
    def register_for_auto_class(cls, auto_class="AutoModel"):
        _skip_registration_in_package(cls, auto_class, super().register_for_auto_class)
