"""Notebook plumbing: jupytext pairs agree, papermill runs and reports failures, nbval catches changes.

The fake notebooks here (``write_fake_notebooks``) follow the real notebooks' contracts in a few lines:
02 reads ArmConfig parameters and writes arm.yaml + metrics.json, 03 writes eval/results.json. The
pipeline and ablation tests run them to check the runners' skip / resume / failure logic for real.
"""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from toolforge.train.arm import ArmConfig, arm_parameters
from toolforge.config import ConfigError, from_dict, parse_key_values, to_dict
from toolforge.jobs.notebooks import NOTEBOOKS_DIR, NotebookError, pair_differences, run_notebook
from toolforge.paths import REPO_ROOT

FAKE_01 = '''
# %% tags=["parameters"]
out_dir = ""
n_examples = 3
fail = False

# %%
from pathlib import Path
assert not fail, "01 asked to fail"
Path(out_dir).mkdir(parents=True, exist_ok=True)
(Path(out_dir) / "generated.txt").write_text(str(n_examples))
'''

FAKE_02 = '''
# %%
import json, os
from toolforge.train.arm import ArmConfig
from toolforge.config import config_from_namespace, dump_yaml
_before = set(globals())

# %% tags=["parameters"]
name = "gemma270m-cpu-demo"

# %%
arm = config_from_namespace(ArmConfig, globals(), _before)
arm.run_dir.mkdir(parents=True, exist_ok=True)
with open(arm.run_dir / "calls.log", "a") as f:  # which notebook ran, in which W&B group
    f.write(("02 " + os.environ.get("WANDB_RUN_GROUP", "")).strip() + "\\n")
assert "broken" not in arm.name, "this arm is broken on purpose"
dump_yaml(arm, arm.run_dir / "arm.yaml")
(arm.run_dir / "metrics.json").write_text(json.dumps({
    "train_loss": [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}], "eval_loss": [{"step": 2, "loss": 1.5}],
    "best_eval_loss": 1.5, "wall_time_s": 3.0, "train_tokens_per_s": 100.0, "peak_memory_gb": 0.5, "device": "cpu"}))
'''

# Accuracy = learning rate x 1000, so a test can tell which arm's result landed in which row.
FAKE_03 = '''
# %% tags=["parameters"]
arm = ""
run_dir = ""
routers = ["model", "heuristic"]

# %%
import json, yaml
from pathlib import Path
run = Path(run_dir)
with open(run / "calls.log", "a") as f:
    f.write("03 " + ",".join(routers) + "\\n")
accuracy = yaml.safe_load((run / "arm.yaml").read_text())["learning_rate"] * 1000
split = {"tool_accuracy": accuracy, "argument_exact_match": 0.5, "no_tool_recall": 0.25, "chain_exact_match": 0.125,
         "per_tool": {"weather": {"precision": 1.0, "recall": 0.5, "f1": 0.667}}}
(run / "eval").mkdir(exist_ok=True)
(run / "eval" / "results.json").write_text(json.dumps({r: {"test": split, "hard_test": split} for r in routers}))
'''


def write_fake_notebooks(folder: Path, names=("01_generate", "02_train_qlora", "03_evaluate")) -> Path:
    sources = {"01_generate": FAKE_01, "02_train_qlora": FAKE_02, "03_evaluate": FAKE_03}
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / f"{name}.py").write_text(sources[name].lstrip(), encoding="utf-8")
    return folder


def write_arm(folder: Path, name: str, **fields) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text("".join(f"{k}: {v}\n" for k, v in {"name": name, **fields}.items()), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- the committed pairs
PY_NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("[0-9]*.py"))


@pytest.mark.parametrize("py_path", PY_NOTEBOOKS, ids=lambda p: p.name)
def test_each_notebook_py_and_ipynb_pair_agree(py_path):
    ipynb = py_path.with_suffix(".ipynb")
    assert ipynb.exists(), f"{ipynb.name} is missing: jupytext --sync {py_path.relative_to(REPO_ROOT)}"
    assert pair_differences(py_path, ipynb) == [], (
        f"{py_path.name} and {ipynb.name} disagree: refresh the executed copies with "
        "python -m toolforge pipeline --store-notebooks")


def injected_parameters(ipynb: Path) -> dict:
    """The values papermill injected into an executed notebook (its injected-parameters cell)."""
    import ast

    cells = [c for c in nbformat.read(ipynb, as_version=4).cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{ipynb.name}: expected one injected-parameters cell, found {len(cells)}"
    return {node.targets[0].id: ast.literal_eval(node.value) for node in ast.parse(cells[0].source).body}


@pytest.mark.skipif(not (NOTEBOOKS_DIR / "02_train_qlora.ipynb").exists(), reason="02 not committed yet")
def test_the_committed_02_carries_the_cpu_demo_arm():
    # nbval re-runs it in CI: without the demo arm's values it would train the defaults (hours on a CPU).
    demo, _ = arm_parameters(REPO_ROOT / "configs" / "arms" / "gemma270m-cpu-demo.yaml")
    assert from_dict(ArmConfig, injected_parameters(NOTEBOOKS_DIR / "02_train_qlora.ipynb")) == demo


def test_every_ipynb_has_its_py():
    orphans = [p.name for p in NOTEBOOKS_DIR.glob("*.ipynb") if not p.with_suffix(".py").exists()]
    assert orphans == []


def test_pair_differences_reports_an_edited_cell(tmp_path):
    import jupytext

    py = tmp_path / "nb.py"
    py.write_text('# %% tags=["parameters"]\nx = 1\n\n# %%\nprint(x)\n')
    nb = jupytext.read(py)
    nbformat.write(nb, tmp_path / "nb.ipynb")
    assert pair_differences(py, tmp_path / "nb.ipynb") == []
    # papermill's injected cell is not a disagreement: the executed .ipynb carries it, the .py does not.
    injected = nbformat.v4.new_code_cell("x = 2", metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(1, injected)
    nbformat.write(nb, tmp_path / "nb.ipynb")
    assert pair_differences(py, tmp_path / "nb.ipynb") == []
    nb.cells[2].source = "print(x + 1)"
    nbformat.write(nb, tmp_path / "nb.ipynb")
    problems = pair_differences(py, tmp_path / "nb.ipynb")
    assert len(problems) == 1 and "print(x + 1)" in problems[0]
    py.write_text(py.read_text() + "\n# %%\nprint('new cell')\n")
    assert any("has 3 cells" in p for p in pair_differences(py, tmp_path / "nb.ipynb"))


# ---------------------------------------------------------------------------------- running them
def test_run_notebook_injects_parameters_and_names_the_failing_cell(tmp_path):
    notebooks = write_fake_notebooks(tmp_path / "nbs", ["01_generate"])
    out = tmp_path / "out"
    executed = run_notebook("01_generate", out / "ok.ipynb", {"out_dir": str(out / "data"), "n_examples": 7},
                            notebooks_dir=notebooks, progress=False)
    assert (out / "data" / "generated.txt").read_text() == "7"
    nb = json.loads(executed.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    assert nb["metadata"]["papermill"]["input_path"].endswith("01_generate.py")
    assert any("injected-parameters" in c["metadata"].get("tags", []) for c in nb["cells"])

    with pytest.raises(NotebookError) as failure:
        run_notebook(notebooks / "01_generate.py", out / "failed.ipynb", {"out_dir": str(out), "fail": True},
                     progress=False)
    message = str(failure.value)
    assert "01_generate.py failed: cell 2" in message and "AssertionError: 01 asked to fail" in message
    assert str(out / "failed.ipynb") in message and (out / "failed.ipynb").exists()


def test_a_streamed_notebook_shows_its_status_lines_as_they_come_and_nothing_else(tmp_path, capsys):
    from toolforge.jobs.notebooks import StatusLines

    py = tmp_path / "talks.py"
    py.write_text('# %%\nimport json, sys, time\nprint(json.dumps({"a": 1}, indent=1))\n'
                  'for step in (1, 2):\n    print(f"train: step {step}/2 ({50 * step}%), loss 0.5", flush=True)\n'
                  '    time.sleep(0.2)\nprint("a table | row")\nprint("run: wrote runs/x/", end="")\n'
                  'print("export: to stderr", file=sys.stderr)\n')
    run_notebook(py, tmp_path / "out.ipynb", progress=False, stream=True)
    shown = capsys.readouterr().out.splitlines()
    assert shown == ["train: step 1/2 (50%), loss 0.5", "train: step 2/2 (100%), loss 0.5"]  # no JSON, table, stderr
    run_notebook(py, tmp_path / "quiet.ipynb", progress=False)
    assert capsys.readouterr().out == ""
    # the lines are cut where the kernel's pieces end, not where its newlines are
    lines = []
    stream = StatusLines(lines.append)
    for piece in ("tra", "in: step 3/9, loss 1\n{\n  \"k\": 1\n", "}\nrun: wrote x/\n", "splits: train 9"):
        stream.write(piece)
    assert lines == ["train: step 3/9, loss 1", "run: wrote x/"]


def test_parameter_names_and_the_unknown_parameter_warning(tmp_path, capsys, caplog):
    from toolforge.jobs.notebooks import parameter_names, read_notebook

    py = tmp_path / "p.py"
    py.write_text('# %% tags=["parameters"]\nx = 1  # "" = a comment with = signs\ny: int = 2\nz = [\n  1,\n]\n\n'
                  '# %%\nw = 3\nprint(x, y, z)\n')
    assert parameter_names(read_notebook(py)) == {"x", "y", "z"}
    run_notebook(py, tmp_path / "out.ipynb", {"x": 5, "typo": 1}, progress=False)
    err = capsys.readouterr().err
    assert "p.py has no parameter(s) ['typo']" in err
    # papermill's own guess (its regex fails on the "=" in the comment) is not passed on.
    assert not any("unknown parameter" in r.getMessage() or "Unable to parse" in r.getMessage() for r in caplog.records)


def test_run_notebook_missing_notebook(tmp_path):
    with pytest.raises(FileNotFoundError, match="09_nothing.py"):
        run_notebook("09_nothing", tmp_path / "x.ipynb", notebooks_dir=tmp_path)


def test_arm_parameters_validates_and_are_the_resolved_arm(tmp_path):
    arm, params = arm_parameters(write_arm(tmp_path, "lr-arm", learning_rate="2e-4", lora_r=8))
    assert {key: params[key] for key in ("name", "learning_rate", "lora_r")} == \
        {"name": "lr-arm", "learning_rate": 2e-4, "lora_r": 8} and arm.lora_r == 8
    assert params == to_dict(arm)
    with pytest.raises(ConfigError, match="lora_rank"):
        arm_parameters(write_arm(tmp_path, "typo", lora_rank=8))


def test_parse_key_values():
    assert parse_key_values(["n=5", "routers=[model]", "flag=true", "s=abc"], "--p") == \
        {"n": 5, "routers": ["model"], "flag": True, "s": "abc"}
    with pytest.raises(ConfigError, match="--p"):
        parse_key_values(["no-equals"], "--p")


# -------------------------------------------------------------------------------------------- nbval
CHECKED_CELL = "# NBVAL_CHECK_OUTPUT\nprint('examples:', 6 * 7)\nprint('took 0.0%s s' % 42)"


def _nbval(tmp_path, stored_output: str) -> subprocess.CompletedProcess:
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    cell = nbformat.v4.new_code_cell(CHECKED_CELL, execution_count=1)
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=stored_output)]
    nb.cells = [cell]
    nbformat.write(nb, tmp_path / "check.ipynb")
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                           "--nbval-sanitize-with", str(NOTEBOOKS_DIR / "nbval_sanitize.cfg"),
                           str(tmp_path / "check.ipynb")], cwd=tmp_path, capture_output=True, text=True)


def test_nbval_passes_when_the_checked_output_matches_up_to_timings(tmp_path):
    # The stored timing differs from the computed one; the sanitize file makes timings compare equal.
    result = _nbval(tmp_path, "examples: 42\ntook 12.5 s\n")
    assert result.returncode == 0, result.stdout + result.stderr


def test_nbval_catches_a_changed_deterministic_output(tmp_path):
    result = _nbval(tmp_path, "examples: 41\ntook 0.042 s\n")
    assert result.returncode != 0 and "examples: 41" in result.stdout, result.stdout + result.stderr


def test_sanitize_file_patterns_compile():
    import re

    from nbval.plugin import get_sanitize_patterns

    patterns = get_sanitize_patterns((NOTEBOOKS_DIR / "nbval_sanitize.cfg").read_text())
    assert len(patterns) >= 8
    text = "took 3.2 s at 2026-11-21 06:18:08 in /work/main/runs/x <Figure at 0x7f4f197a6e80> 12.5it/s"
    for regex, replace in patterns:
        text = re.sub(regex, replace, text)
    assert "3.2" not in text and "06:18" not in text and "0x7f" not in text and "/work/main" not in text
