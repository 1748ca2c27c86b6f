"""Kaggle: ``python -m toolforge publish`` (data/ as a Kaggle Dataset, so the notebooks run on a free Kaggle
T4), and reading Kaggle Secrets (the teacher's keys, the W&B key) where a notebook has no environment.

The Kaggle CLI uploads a folder that holds the data files and a ``dataset-metadata.json``. This command
stages that folder: it copies every file of data/ and writes the metadata from the repository's
``kaggle-dataset-metadata.json``, after checking its fields and that its ``resources`` describe exactly
the files staged. Then it runs ``kaggle datasets create`` (``--new``) or ``kaggle datasets version``.
``--dry-run`` prints the files, their sizes and the command, and touches no network.

The committed metadata's id is ``KAGGLE_USERNAME/toolforge-router-data``: the placeholder is replaced by
``--user`` or $KAGGLE_USERNAME (the name the Kaggle CLI also reads). Attached to a notebook, the dataset
appears at /kaggle/input/toolforge-router-data/, where ``toolforge.paths.data_dir()`` finds it.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from toolforge.config import ConfigError
from toolforge.paths import KAGGLE_SLUG, REPO_ROOT, data_dir, on_kaggle

METADATA_PATH = REPO_ROOT / "kaggle-dataset-metadata.json"
USER_PLACEHOLDER = "KAGGLE_USERNAME"
# The licence names Kaggle accepts (Kaggle/kaggle-api docs/datasets_metadata.md).
LICENSES = {
    "CC0-1.0", "CC-BY-SA-3.0", "CC-BY-SA-4.0", "CC-BY-NC-SA-4.0", "GPL-2.0", "ODbL-1.0", "DbCL-1.0",
    "copyright-authors", "other", "unknown", "CC-BY-4.0", "CC-BY-NC-4.0", "PDDL", "CC-BY-3.0",
    "CC-BY-3.0-IGO", "US-Government-Works", "CC-BY-NC-SA-3.0-IGO", "CDLA-Permissive-1.0", "CDLA-Sharing-1.0",
    "CC-BY-ND-4.0", "CC-BY-NC-ND-4.0", "ODC-BY-1.0", "LGPL-3.0", "AGPL-3.0", "FDL-1.3", "EU-ODP-Legal-Notice",
    "apache-2.0", "GPL-3.0",
}


def validate_metadata(meta: Any, source: str = "metadata") -> None:
    """Raise ConfigError naming the field when ``meta`` is not metadata the Kaggle CLI accepts."""
    def fail(field: str, problem: str) -> None:
        raise ConfigError(f"{source}: {field}: {problem}")

    if not isinstance(meta, dict):
        fail("(top level)", "expected a JSON object")
    title = meta.get("title")
    if not isinstance(title, str) or not 6 <= len(title) <= 50:
        fail("title", f"must be a string of 6 to 50 characters, got {title!r}")
    subtitle = meta.get("subtitle")
    if subtitle is not None and (not isinstance(subtitle, str) or not 20 <= len(subtitle) <= 80):
        fail("subtitle", f"must be a string of 20 to 80 characters, got {subtitle!r}")
    dataset_id = meta.get("id")
    match = re.fullmatch(r"([A-Za-z0-9_-]+)/([a-z0-9-]{3,50})", dataset_id) if isinstance(dataset_id, str) else None
    if not match:
        fail("id", f'must be "user/slug" with a slug of 3 to 50 of [a-z0-9-], got {dataset_id!r}')
    if match.group(2) != KAGGLE_SLUG:
        fail("id", f"the slug must be {KAGGLE_SLUG!r} (the notebooks look for /kaggle/input/{KAGGLE_SLUG}/)")
    licenses = meta.get("licenses")
    if not (isinstance(licenses, list) and len(licenses) == 1 and isinstance(licenses[0], dict)):
        fail("licenses", f'must be exactly one entry like [{{"name": "CC-BY-4.0"}}], got {licenses!r}')
    if licenses[0].get("name") not in LICENSES:
        fail("licenses[0].name", f"{licenses[0].get('name')!r} is not a Kaggle licence; one of {sorted(LICENSES)}")
    resources = meta.get("resources")
    if not isinstance(resources, list) or not resources:
        fail("resources", "must be a non-empty list of {path, description}")
    for i, resource in enumerate(resources):
        if not isinstance(resource, dict):
            fail(f"resources[{i}]", "must be an object with path and description")
        for key in ("path", "description"):
            if not isinstance(resource.get(key), str) or not resource[key].strip():
                fail(f"resources[{i}].{key}", "must be a non-empty string")
    keywords = meta.get("keywords", [])
    if not isinstance(keywords, list) or not all(isinstance(k, str) for k in keywords):
        fail("keywords", "must be a list of strings")


def load_metadata(path: str | Path = METADATA_PATH, user: str | None = None) -> dict[str, Any]:
    """The metadata file, validated, with the user placeholder replaced when a user is known."""
    path = Path(path)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: line {e.lineno}: invalid JSON: {e.msg}") from None
    user = user or os.environ.get("KAGGLE_USERNAME")
    if user and isinstance(meta, dict) and isinstance(meta.get("id"), str):
        meta["id"] = meta["id"].replace(USER_PLACEHOLDER, user)
    validate_metadata(meta, str(path))
    return meta


def data_files(folder: str | Path) -> list[str]:
    """The files a dataset would hold: every file under ``folder`` but hidden ones, as relative paths."""
    folder = Path(folder)
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def stage(data_path: str | Path, metadata_path: str | Path, staging_dir: str | Path,
          user: str | None = None) -> list[tuple[str, int]]:
    """Copy the data files into ``staging_dir`` with its dataset-metadata.json; return (file, bytes) pairs.

    The metadata's resources must describe exactly the files there: an undescribed file or a
    description of a missing file is an error, naming them, and nothing is staged.
    """
    data_path, staging_dir = Path(data_path), Path(staging_dir)
    meta = load_metadata(metadata_path, user)
    files = data_files(data_path)
    if not files:
        raise ConfigError(f"{data_path}: no data files to publish (python -m toolforge generate writes them)")
    described = [r["path"] for r in meta["resources"]]
    undescribed = sorted(set(files) - set(described))
    missing = sorted(set(described) - set(files))
    if undescribed or missing:
        problems = ([f"files with no description in resources: {undescribed}"] if undescribed else []) + \
                   ([f"resources describing files not in {data_path}: {missing}"] if missing else [])
        raise ConfigError(f"{metadata_path}: resources: " + "; ".join(problems))
    staging_dir.mkdir(parents=True, exist_ok=True)
    for name in files:
        (staging_dir / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(data_path / name, staging_dir / name)
    (staging_dir / "dataset-metadata.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return [(name, (staging_dir / name).stat().st_size) for name in files]


def publish_command(staging_dir: str | Path, new: bool, message: str) -> list[str]:
    if new:
        return ["kaggle", "datasets", "create", "-p", str(staging_dir), "--dir-mode", "zip"]
    return ["kaggle", "datasets", "version", "-p", str(staging_dir), "-m", message, "--dir-mode", "zip"]


def publish(data_path: str | Path | None = None, metadata_path: str | Path = METADATA_PATH,
            staging_dir: str | Path | None = None, new: bool = False, message: str = "Update the ToolForge data",
            dry_run: bool = False, user: str | None = None) -> int:
    """Stage the dataset and create it (``new``) or add a version; with ``dry_run`` only say what would happen."""
    data_path = Path(data_path) if data_path else data_dir()
    with tempfile.TemporaryDirectory(prefix="toolforge-kaggle-") as tmp:
        staging = Path(staging_dir) if staging_dir else Path(tmp) / KAGGLE_SLUG
        staged = stage(data_path, metadata_path, staging, user)
        meta = json.loads((staging / "dataset-metadata.json").read_text(encoding="utf-8"))
        command = publish_command(staging, new, message)
        print(f"dataset {meta['id']}: {len(staged)} files, {sum(size for _, size in staged):,} bytes, staged in {staging}")
        for name, size in staged:
            print(f"  {size:>12,}  {name}")
        if dry_run:
            if USER_PLACEHOLDER in meta["id"]:
                print(f"note: set --user or $KAGGLE_USERNAME to replace {USER_PLACEHOLDER} in the id")
            print("dry run, would run: " + shlex.join(command))
            return 0
        if USER_PLACEHOLDER in meta["id"]:
            raise ConfigError(f"id: still {meta['id']!r}; pass --user or set $KAGGLE_USERNAME")
        if shutil.which("kaggle") is None:
            raise ConfigError("the Kaggle CLI is not installed: pip install kaggle, and put your API token in "
                              "~/.kaggle/kaggle.json (or $KAGGLE_USERNAME and $KAGGLE_KEY)")
        print("running: " + shlex.join(command), flush=True)
        return subprocess.run(command).returncode


# -- Kaggle Secrets: what a notebook on Kaggle has in place of environment variables ----------------

def kaggle_secret(name: str) -> str | None:
    """The Kaggle Secret ``name`` attached to this notebook; None when it is not attached or when
    this is not a Kaggle kernel (no ``kaggle_secrets`` module)."""
    try:
        from kaggle_secrets import UserSecretsClient  # type: ignore[import-not-found]

        return UserSecretsClient().get_secret(name) or None
    except Exception:  # ImportError off Kaggle; the client raises a bare Exception for a missing secret
        return None


def secret_to_env(name: str) -> bool:
    """On Kaggle, copy the attached Kaggle Secret ``name`` into os.environ unless it is set already;
    True when the variable is set afterwards. Elsewhere the environment is all there is."""
    if os.environ.get(name):
        return True
    value = kaggle_secret(name) if on_kaggle() else None
    if value:
        os.environ[name] = value
    return bool(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="toolforge publish", description=__doc__.split("\n\n")[0].replace("``", ""))
    parser.add_argument("--data-dir", help="the folder to publish (default: data/)")
    parser.add_argument("--metadata", default=str(METADATA_PATH), help="default: kaggle-dataset-metadata.json")
    parser.add_argument("--user", help="your Kaggle user name (default: $KAGGLE_USERNAME)")
    parser.add_argument("--new", action="store_true", help="create the dataset (first time); else add a version")
    parser.add_argument("-m", "--message", default="Update the ToolForge data", help="version notes")
    parser.add_argument("--staging-dir", help="stage here and keep it (default: a temporary folder)")
    parser.add_argument("--dry-run", action="store_true", help="print files, sizes and the command; upload nothing")
    args = parser.parse_args(argv)
    try:
        return publish(args.data_dir, args.metadata, args.staging_dir, args.new, args.message, args.dry_run, args.user)
    except ConfigError as e:
        print(f"publish: {e}", file=sys.stderr)
        return 2
