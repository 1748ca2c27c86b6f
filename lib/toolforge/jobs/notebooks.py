"""The one place that runs notebooks: jupytext .py -> .ipynb with a kernelspec, executed by papermill.

Every notebook is a jupytext pair, ``notebooks/NN_name.py`` (percent format, the source of truth) and
``notebooks/NN_name.ipynb`` (the committed executed copy that nbval checks). To run one, the .py is
converted into a fresh .ipynb in a temporary folder (papermill reads only .ipynb), so running never
rewrites the committed pair; the executed copy goes where the caller says (``runs/<arm>/notebooks/``),
and ``store_executed`` copies it over the committed pair when that is wanted (pipeline
--store-notebooks). A notebook runs in its own folder as working directory, as under Jupyter and nbval.
With ``stream`` the notebook's status lines ("train: step 40/413 ...", ``STATUS_LINE``) reach the terminal
as the cells print them, above papermill's cell counter (``StatusLines``).
"""
from __future__ import annotations

import ast
import json
import logging
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from toolforge.paths import REPO_ROOT

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
KERNEL_NAME = "python3"
KERNELSPEC = {"name": KERNEL_NAME, "display_name": "Python 3", "language": "python"}
# papermill tags the cell it adds with the injected values; it is not part of the .py source.
INJECTED_TAG = "injected-parameters"
# The library's status lines: "what: what happened" at the start of a line ("train: step 40/413 (10%), loss
# 0.31, 1:23 elapsed, about 12:40 left", "run: wrote runs/x/", "splits: train 7391, ..."); not JSON, not tables.
STATUS_LINE = re.compile(r"[a-z][a-z0-9 _-]{0,30}: \S")


class StatusLines:
    """papermill's ``stdout_file``: the kernel's stdout arrives here in pieces; each whole line that is a
    status line goes to ``write`` (default ``tqdm.write``, which keeps papermill's cell counter below it),
    the rest stays in the executed notebook only."""

    def __init__(self, write=None):
        from tqdm import tqdm

        self._write, self._pending = write or tqdm.write, ""

    def write(self, text: str) -> None:
        *lines, self._pending = (self._pending + text).split("\n")
        for line in lines:
            if STATUS_LINE.match(line):
                self._write(line.rstrip())

    def flush(self) -> None:
        pass


class NotebookError(RuntimeError):
    """A notebook failed while running; says which notebook, which cell, and where its executed copy is."""

    def __init__(self, notebook: Path, executed: Path, detail: str):
        self.notebook, self.executed, self.detail = Path(notebook), Path(executed), detail
        super().__init__(f"{self.notebook.name} failed: {detail}\n  {self.where}")

    @property
    def where(self) -> str:
        # papermill writes the copy before starting the kernel, then after every cell.
        return f"executed copy (up to the failing cell): {repo_relative(self.executed)}"


def notebook_path(name_or_path: str | Path, notebooks_dir: str | Path | None = None) -> Path:
    """``02_train_qlora`` -> notebooks/02_train_qlora.py; a path to a .py or .ipynb is kept as it is."""
    path = Path(name_or_path)
    if path.suffix not in (".py", ".ipynb"):
        path = Path(notebooks_dir or NOTEBOOKS_DIR) / f"{path.name}.py"
    return path


def read_notebook(path: str | Path):
    """A notebook (from a .py or an .ipynb) as an nbformat node, with the python3 kernelspec set."""
    import jupytext

    nb = jupytext.read(Path(path))
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    return nb


def parameter_names(nb) -> set[str]:
    """The names the notebook's ``parameters`` cell assigns (empty when it has none)."""
    names: set[str] = set()
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            for node in ast.parse(cell.source).body:
                targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
                names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


class _DropPapermillGuesses(logging.Filter):
    # papermill guesses a notebook's parameters with a regex that gives up on a line whose comment holds
    # an "=", then warns that real parameters are unknown; run_notebook checks them with ast instead.
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("Unable to parse line") or message.startswith("Passed unknown parameter"))


for _name in ("papermill", "papermill.translators"):
    logging.getLogger(_name).addFilter(_DropPapermillGuesses())


def ensure_ipynb(path: str | Path, workdir: str | Path) -> Path:
    """An .ipynb papermill can read: an .ipynb as it is; a .py converted into ``workdir``."""
    import jupytext

    path = Path(path)
    if path.suffix == ".ipynb":
        return path
    target = Path(workdir) / f"{path.stem}.ipynb"
    jupytext.write(read_notebook(path), target, fmt="ipynb")
    return target


def run_notebook(name_or_path: str | Path, output_path: str | Path, parameters: dict[str, Any] | None = None,
                 cwd: str | Path | None = None, notebooks_dir: str | Path | None = None,
                 progress: bool = True, stream: bool = False) -> Path:
    """Execute a notebook headless with papermill, injecting ``parameters``; return the executed copy.
    ``stream``: the notebook's status lines to the terminal as they are printed (``StatusLines``).

    Raises NotebookError naming the failing cell and the executed copy (papermill saves it up to the
    failure) when a cell raises; FileNotFoundError when the notebook does not exist.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    source = notebook_path(name_or_path, notebooks_dir)
    if not source.is_file():
        raise FileNotFoundError(f"notebook not found: {source}")
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="toolforge-nb-") as tmp:
        ipynb = ensure_ipynb(source, tmp)
        unknown = sorted(set(parameters or {}) - parameter_names(read_notebook(ipynb)))
        if unknown:
            print(f"warning: {source.name} has no parameter(s) {unknown} in its parameters cell", file=sys.stderr)
        try:
            papermill.execute_notebook(str(ipynb), str(output_path),
                                       parameters=parameters or {}, kernel_name=KERNEL_NAME,
                                       progress_bar=progress, cwd=str(cwd or source.parent),
                                       stdout_file=StatusLines() if stream else None)
        except PapermillExecutionError as e:
            first_line = (e.source or "").strip().splitlines()[:1]
            where = f"cell {e.cell_index} (In [{e.exec_count}]{': ' + first_line[0] if first_line else ''})"
            raise NotebookError(source, output_path, f"{where}: {e.ename}: {e.evalue}") from None
        except Exception as e:  # the kernel died (out of memory, killed), a timeout, no kernel
            raise NotebookError(source, output_path, f"{type(e).__name__}: {e}") from e
        finally:
            if output_path.exists():
                _record_source(output_path, source)
    return output_path


def _record_source(executed: Path, source: Path) -> None:
    # papermill recorded the temporary .ipynb as the input; the .py is the notebook that ran.
    nb = json.loads(executed.read_text(encoding="utf-8"))
    nb.setdefault("metadata", {}).setdefault("papermill", {})["input_path"] = repo_relative(source)
    nb["metadata"]["papermill"]["output_path"] = repo_relative(executed)
    executed.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def repo_relative(path: str | Path) -> str:
    """Repository-relative when inside the repository (committed notebooks carry no machine paths, and
    notebooks, which run in notebooks/, resolve such paths against the repository root)."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def store_executed(executed: str | Path, notebooks_dir: str | Path | None = None) -> Path:
    """Copy an executed notebook over its committed pair notebooks/<name>.ipynb (nbval's reference)."""
    executed = Path(executed)
    target = Path(notebooks_dir or NOTEBOOKS_DIR) / executed.name
    nb = json.loads(executed.read_text(encoding="utf-8"))
    nb.setdefault("metadata", {}).setdefault("papermill", {})["output_path"] = repo_relative(target)
    target.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return target


def source_cells(path: str | Path) -> list[tuple[str, str]]:
    """(cell type, source) of every cell but papermill's injected parameters: what a pair must share."""
    return [(cell.cell_type, cell.source.strip()) for cell in read_notebook(path).cells
            if INJECTED_TAG not in cell.metadata.get("tags", [])]


def pair_differences(py_path: str | Path, ipynb_path: str | Path) -> list[str]:
    """How the .py and .ipynb of a jupytext pair disagree (cell sources only); empty when they agree."""
    left, right = source_cells(py_path), source_cells(ipynb_path)
    problems = [f"cell {i}: {a[0]} cell differs:\n--- {Path(py_path).name}\n{a[1]}\n--- {Path(ipynb_path).name}\n{b[1]}"
                for i, (a, b) in enumerate(zip(left, right)) if a != b]
    if len(left) != len(right):
        problems.append(f"{Path(py_path).name} has {len(left)} cells, {Path(ipynb_path).name} has {len(right)}")
    return problems

