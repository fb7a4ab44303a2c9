import types
from pathlib import Path

import pytest
from huggingface_hub import HfApi
from huggingface_hub.hf_api import DEFAULT_IGNORE_PATTERNS
from huggingface_hub.utils import filter_repo_objects


@pytest.fixture
def hub_calls(monkeypatch):
    """The Hub intercepted: HfApi.create_repo / create_branch / upload_folder record their calls; an upload keeps
    the bytes of every file `HfApi.upload_folder` would send (its filter: ignore_patterns + the default ones)."""
    calls = types.SimpleNamespace(create_repo=[], create_branch=[], uploads=[])

    def create_repo(self, repo_id, **kwargs):
        calls.create_repo.append((repo_id, kwargs))
        return f"https://huggingface.co/{repo_id}"

    def create_branch(self, repo_id, **kwargs):
        calls.create_branch.append((repo_id, kwargs))

    def upload_folder(self, *, repo_id, folder_path, ignore_patterns=None, **kwargs):
        folder = Path(folder_path)
        paths = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
        sent = filter_repo_objects(paths, ignore_patterns=[*(ignore_patterns or []), *DEFAULT_IGNORE_PATTERNS])
        calls.uploads.append((repo_id, {name: (folder / name).read_bytes() for name in sent}, kwargs))
        return types.SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/0", oid="0" * 40)

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "create_branch", create_branch)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    return calls
