"""Broken workspace files through the command line: a read-only workspace, a damaged mlflow.db,
Feast registry.db or live.json each exit with code 6 and a message naming the file, no trace;
`repair` makes a damaged live.json good again."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from pipelines import online, registry, tracking
from pipelines.cli import EXIT_BROKEN, main
from pipelines.config import load_config
from pipelines.registry import CHAMPION, MODEL_NAME
from pipelines.workspace import TABLE_FILE, feature_repo_dir
from tests.conftest import REPO
from tests.pipelines.test_serve import related_table_from

GARBAGE = b"\x0a\xff\xff this is not what the file should hold " * 40


def cli(workspace: Path, *command: str) -> int:
    return main(["--workspace", str(workspace), "--size", "toy", *command])


@pytest.fixture(scope="module")
def published_workspace(toy_pipeline, tmp_path_factory) -> dict:
    """A copy of the toy pipeline's workspace with a related table registered as the champion
    in its own MLflow store and published through the command line. Tests copy it again."""
    root = tmp_path_factory.mktemp("published") / "workspace"
    shutil.copytree(toy_pipeline.config.paths.workspace, root)
    config = load_config(overrides=[f"paths.workspace={root}", "synthetic.size=toy"])
    repo = feature_repo_dir(config)
    # Another test module may have published into the shared workspace: start from nothing live.
    (online.related_folder(repo) / online.LIVE_FILE).unlink(missing_ok=True)
    table = related_table_from(toy_pipeline.candidates.pairs, 5)
    path = root / TABLE_FILE
    table.to_parquet(path, index=False)
    tracking.configure_for(config)
    with tracking.step_run("merge"):
        version = registry.register(
            MODEL_NAME,
            "related_table",
            {"related_table": path},
            {"table_digest": registry.file_digest(path), "output_gate": "passed"},
        )
    mlflow.MlflowClient().set_registered_model_alias(MODEL_NAME, CHAMPION, version.version)
    assert cli(root, "publish") == 0
    return {"root": root, "repo": repo, "video_id": str(table["video_id"].iloc[0])}


@pytest.fixture
def workspace(published_workspace, tmp_path) -> Path:
    """A copy of the published workspace, free to break."""
    return Path(shutil.copytree(published_workspace["root"], tmp_path / "workspace"))


def broken_message(capsys, file: Path | str) -> str:
    err = capsys.readouterr().err
    assert str(file) in err, err
    assert "Traceback" not in err and len(err.splitlines()) <= 3, err
    return err


def test_a_truncated_live_json_names_the_file_and_repair(workspace, published_workspace, capsys):
    repo = workspace / feature_repo_dir_of(workspace, published_workspace)
    pointer = online.related_folder(repo) / online.LIVE_FILE
    pointer.write_text(pointer.read_text()[:25])
    assert cli(workspace, "related", published_workspace["video_id"]) == EXIT_BROKEN
    err = broken_message(capsys, pointer)
    assert "live pointer is damaged" in err and "related-videos repair" in err
    assert cli(workspace, "publish") == EXIT_BROKEN  # publish cannot tell what is live either
    broken_message(capsys, pointer)


def test_repair_rewrites_a_truncated_live_json(workspace, published_workspace, capsys):
    repo = workspace / feature_repo_dir_of(workspace, published_workspace)
    pointer = online.related_folder(repo) / online.LIVE_FILE
    before = online.read_live(repo)
    pointer.write_text(pointer.read_text()[:25])
    video_id = published_workspace["video_id"]
    assert cli(workspace, "related", video_id) == EXIT_BROKEN
    capsys.readouterr()
    assert cli(workspace, "repair") == 0
    assert "repaired: online: related-videos v1 published" in capsys.readouterr().out
    assert pointer.with_name("live.json.broken").exists()
    after = online.read_live(repo)
    assert after.version == before.version and after.videos == before.videos
    assert cli(workspace, "related", video_id) == 0
    assert capsys.readouterr().out.startswith(f"related videos of {video_id} under v1 ")
    assert cli(workspace, "repair") == 0  # nothing broken: nothing to do
    assert "already live" in capsys.readouterr().out


def test_a_corrupt_feast_registry_names_the_file(workspace, published_workspace, capsys):
    repo = workspace / feature_repo_dir_of(workspace, published_workspace)
    registry_file = repo / "data" / "registry.db"
    registry_file.write_bytes(GARBAGE)
    assert cli(workspace, "related", published_workspace["video_id"]) == EXIT_BROKEN
    err = broken_message(capsys, registry_file)
    assert "Feast registry is damaged" in err and "feast apply" in err
    assert cli(workspace, "repair") == 0  # feast apply: the definitions again, the rows kept
    assert cli(workspace, "related", published_workspace["video_id"]) == 0


def test_a_corrupt_mlflow_db_names_the_file(workspace, capsys):
    database = workspace / "mlflow.db"
    assert database.exists()
    database.write_bytes(GARBAGE)
    assert cli(workspace, "publish") == EXIT_BROKEN
    err = broken_message(capsys, database.resolve())
    assert "MLflow tracking database is damaged" in err and ".broken" in err


def without_permission_bypass() -> list[str] | None:
    """A command prefix under which root obeys file permissions like any user: setpriv drops
    the capabilities that let root write where the mode bits forbid it. None when this process
    is not root (permissions hold already); pytest.skip when root and setpriv is missing."""
    if os.geteuid() != 0:
        return None
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without util-linux's setpriv: chmod cannot make it read-only")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner,-linux_immutable", "--"]


def set_modes(root: Path, folders: int, files: int) -> None:
    for folder, _, names in os.walk(root):
        os.chmod(folder, folders)
        for name in names:
            os.chmod(Path(folder) / name, files)


def test_a_read_only_workspace_names_the_file(workspace):
    """A workspace made read-only with chmod: `publish` exits with the broken-state code and a
    message naming the file and the fix, no traceback. Run as a real process; as root, under
    setpriv without the capabilities that bypass permissions, so the chmod holds for it too."""
    prefix = without_permission_bypass() or []
    set_modes(workspace, folders=0o555, files=0o444)
    try:
        done = subprocess.run(
            [
                *prefix,
                sys.executable,
                "-m",
                "pipelines.cli",
                "--workspace",
                str(workspace),
                "--size",
                "toy",
                "publish",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=REPO,
            # mlflow.set_tracking_uri exports the store this process last configured (the
            # session's, or another workspace's): the command must read the workspace's own.
            env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
        )
    finally:
        set_modes(workspace, folders=0o755, files=0o644)
    assert done.returncode == EXIT_BROKEN, done.stderr[-3000:]
    err = done.stderr
    assert str(workspace.resolve() / ".run.lock") in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 3, err
    assert "is read-only for this user" in err and "chmod -R u+w" in err


def feature_repo_dir_of(workspace: Path, published: dict) -> Path:
    """The feature repo's place inside a copy of the published workspace."""
    return published["repo"].relative_to(published["root"])


def test_a_model_whose_stored_code_changed_is_not_loaded(workspace, published_workspace):
    """The code file stored beside a registered model runs when it loads: its sha256 is
    recorded at registration, and a changed file is refused before anything of it runs."""
    from pipelines.broken import BrokenState

    config = load_config(overrides=[f"paths.workspace={workspace}", "synthetic.size=toy"])
    tracking.configure_for(config)
    table = workspace / TABLE_FILE
    with tracking.step_run("merge"):
        version = registry.register(MODEL_NAME, "related_table", {"related_table": table}, {})
    recorded = version.tags[registry.CODE_DIGEST_TAG]
    assert recorded == registry.sha256_of(registry.MODEL_CODE / "related_table.py")
    model = registry.load_model(MODEL_NAME, version.version)
    video_id = published_workspace["video_id"]
    assert len(model.predict([video_id])["related_video_ids"].iloc[0]) > 0

    source = mlflow.MlflowClient().get_model_version_download_uri(MODEL_NAME, version.version)
    stored = Path(source.removeprefix("file://")) / "related_table.py"
    ran = workspace / "tampered-code-ran"
    stored.write_text(stored.read_text() + f"\nopen({str(ran)!r}, 'w').close()\n")
    with pytest.raises(BrokenState, match=r"refusing to load it: its stored code file") as refused:
        registry.load_model(MODEL_NAME, version.version)
    assert f"models:/{MODEL_NAME}/{version.version}" in str(refused.value)
    assert "related_table.py" in str(refused.value)
    assert not ran.exists()  # the changed code never ran
