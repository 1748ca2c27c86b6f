"""Kaggle packaging: metadata validation, staging, the dry run, and the CLI call (a fake kaggle on PATH)."""
import copy
import json
import os
import stat
import sys
import types

import pytest

from toolforge.data import publish as kaggle
from toolforge.config import ConfigError
from toolforge.paths import KAGGLE_SLUG, data_dir

GOOD = {
    "title": "ToolForge tool-routing data",
    "id": f"KAGGLE_USERNAME/{KAGGLE_SLUG}",
    "licenses": [{"name": "CC-BY-4.0"}],
    "resources": [{"path": "train.jsonl", "description": "train"}, {"path": "sub/test.jsonl", "description": "test"}],
}


@pytest.fixture
def dataset(tmp_path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "train.jsonl").write_text('{"query": "hi"}\n' * 3)
    (data / "sub" / "test.jsonl").write_text('{"query": "x"}\n')
    (data / ".hidden").write_text("not published")
    metadata = tmp_path / "meta.json"
    metadata.write_text(json.dumps(GOOD))
    return data, metadata


def test_the_committed_metadata_is_valid_and_describes_the_data_files():
    meta = kaggle.load_metadata(kaggle.METADATA_PATH)
    assert meta["id"].endswith("/" + KAGGLE_SLUG)
    described = sorted(r["path"] for r in meta["resources"])
    assert described == kaggle.data_files(data_dir()), "kaggle-dataset-metadata.json resources != data/ files"


def test_dry_run_prints_files_sizes_and_command_and_runs_nothing(dataset, tmp_path, capsys, monkeypatch):
    data, metadata = dataset
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.setattr(kaggle.subprocess, "run", lambda *a, **k: pytest.fail("the dry run ran a command"))
    staging = tmp_path / "staged"
    assert kaggle.main(["--data-dir", str(data), "--metadata", str(metadata), "--staging-dir", str(staging),
                        "--dry-run", "-m", "v2 notes"]) == 0
    out = capsys.readouterr().out
    assert "2 files, 63 bytes" in out and "48  train.jsonl" in out and "15  sub/test.jsonl" in out
    assert f"would run: kaggle datasets version -p {staging} -m 'v2 notes' --dir-mode zip" in out
    assert "KAGGLE_USERNAME" in out  # the note to set the user
    assert sorted(p.name for p in staging.rglob("*") if p.is_file()) == ["dataset-metadata.json", "test.jsonl",
                                                                         "train.jsonl"]
    kaggle.main(["--data-dir", str(data), "--metadata", str(metadata), "--dry-run", "--new", "--user", "ada"])
    out = capsys.readouterr().out
    assert f"dataset ada/{KAGGLE_SLUG}" in out and "would run: kaggle datasets create -p" in out


@pytest.mark.parametrize("change, field", [
    ({"title": "Tiny"}, "title"),
    ({"id": "no-slash"}, "id"),
    ({"id": "ada/Bad_Slug"}, "id"),
    ({"id": "ada/other-name"}, "id"),
    ({"licenses": [{"name": "WTFPL"}]}, "licenses[0].name"),
    ({"licenses": []}, "licenses"),
    ({"resources": [{"path": "train.jsonl"}]}, "resources[0].description"),
    ({"subtitle": "short"}, "subtitle"),
])
def test_bad_metadata_is_rejected_naming_the_field(tmp_path, change, field):
    meta = {**copy.deepcopy(GOOD), **change}
    path = tmp_path / "meta.json"
    path.write_text(json.dumps(meta))
    with pytest.raises(ConfigError) as error:
        kaggle.load_metadata(path)
    assert f"{path}: {field}:" in str(error.value)


def test_resources_must_match_the_files(dataset, tmp_path):
    data, metadata = dataset
    (data / "extra.jsonl").write_text("{}\n")
    (data / "train.jsonl").unlink()
    with pytest.raises(ConfigError) as error:
        kaggle.stage(data, metadata, tmp_path / "staged")
    message = str(error.value)
    assert "no description in resources: ['extra.jsonl']" in message and "not in" in message and "train.jsonl" in message
    assert not (tmp_path / "staged").exists()
    (metadata).write_text("{not json")
    with pytest.raises(ConfigError, match="line 1: invalid JSON"):
        kaggle.stage(data, metadata, tmp_path / "staged")


def test_publish_calls_the_kaggle_cli(dataset, tmp_path, monkeypatch, capsys):
    data, metadata = dataset
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    assert kaggle.main(["--data-dir", str(data), "--metadata", str(metadata)]) == 2
    assert "--user" in capsys.readouterr().err
    # A stand-in kaggle CLI that records its arguments and the metadata of the folder it was given.
    bin_dir, record = tmp_path / "bin", tmp_path / "record.txt"
    bin_dir.mkdir()
    fake = bin_dir / "kaggle"
    fake.write_text(f'#!/bin/sh\necho "$@" > {record}\ncat "$4/dataset-metadata.json" >> {record}\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("KAGGLE_USERNAME", "ada")
    assert kaggle.main(["--data-dir", str(data), "--metadata", str(metadata), "--new"]) == 0
    args, meta = record.read_text().split("\n", 1)
    assert args.startswith("datasets create -p ") and args.endswith("--dir-mode zip")
    assert json.loads(meta)["id"] == f"ada/{KAGGLE_SLUG}"


def test_secret_to_env_keeps_what_is_set_and_needs_kaggle(monkeypatch):
    monkeypatch.setenv("TOOLFORGE_TEST_SECRET", "set")
    assert kaggle.secret_to_env("TOOLFORGE_TEST_SECRET")
    monkeypatch.delenv("TOOLFORGE_TEST_SECRET")
    monkeypatch.setattr(kaggle, "on_kaggle", lambda: False)
    assert not kaggle.secret_to_env("TOOLFORGE_TEST_SECRET")
    # On Kaggle: an attached secret lands in the environment; a missing one (the client raises) does not.
    secrets = {"TOOLFORGE_TEST_SECRET": "from-kaggle"}

    class Client:
        def get_secret(self, name):
            if name not in secrets:
                raise Exception("no such secret")
            return secrets[name]

    monkeypatch.setattr(kaggle, "on_kaggle", lambda: True)
    monkeypatch.setitem(sys.modules, "kaggle_secrets", types.SimpleNamespace(UserSecretsClient=Client))
    assert kaggle.secret_to_env("TOOLFORGE_TEST_SECRET") and os.environ["TOOLFORGE_TEST_SECRET"] == "from-kaggle"
    assert not kaggle.secret_to_env("TOOLFORGE_OTHER_SECRET") and "TOOLFORGE_OTHER_SECRET" not in os.environ
