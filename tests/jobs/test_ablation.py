"""The ablation study: resumable runs over fake 02/03 notebooks, the table, the plots, W&B gating."""
import json
import sys
import types
from pathlib import Path

import pytest
import yaml

from test_notebooks import write_arm, write_fake_notebooks
from toolforge.jobs import ablation
from toolforge.jobs.ablation import StudyConfig, arm_status, load_study, run_study
from toolforge.train.arm import load_arm
from toolforge.config import ConfigError, dump_yaml
from toolforge.jobs.notebooks import run_notebook
from toolforge.paths import REPO_ROOT


def calls(runs: Path, arm: str) -> list[str]:
    log = runs / arm / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


@pytest.fixture
def study_files(tmp_path):
    notebooks = write_fake_notebooks(tmp_path / "notebooks", ["02_train_qlora", "03_evaluate"])
    arms = tmp_path / "arms"
    arms.mkdir()
    good = write_arm(arms, "good", learning_rate=5e-4, lora_r=8)
    broken = write_arm(arms, "broken-arm", learning_rate=2e-4)
    return notebooks, good, broken


def test_study_runs_records_failure_skips_finished_and_aggregates(tmp_path, study_files, capsys):
    notebooks, good, broken = study_files
    runs, out = tmp_path / "runs", tmp_path / "table"
    study = StudyConfig(name="t", arms=[str(broken), str(good)], evaluate={"routers": ["model"]})
    rows = run_study(study, runs, out_dir=out, notebooks_dir=notebooks)

    # The broken arm failed in 02, was recorded, and the good arm still ran 02 then 03 (model router only);
    # the notebooks saw the study's name as their W&B group.
    failed = (runs / "broken-arm" / "FAILED.txt").read_text()
    assert "02_train_qlora.py failed" in failed and "broken on purpose" in failed
    assert (runs / "broken-arm" / "notebooks" / "02_train_qlora.ipynb").exists()
    assert calls(runs, "broken-arm") == ["02 t"] and calls(runs, "good") == ["02 t", "03 model"]
    assert (runs / "good" / "notebooks" / "03_evaluate.ipynb").exists()

    assert [r["arm"] for r in rows] == ["broken-arm", "good"]
    assert [r["status"] for r in rows] == ["failed", "finished"]
    good_row = rows[1]
    assert good_row["test.tool_accuracy"] == pytest.approx(0.5) and good_row["lora_r"] == 8
    assert good_row["wall_time_s"] == 3.0 and good_row["hard_test.no_tool_recall"] == 0.25
    for name in ("results.csv", "results.md", "accuracy.png", "per_tool_f1.png", "loss_curves.png"):
        assert (out / name).stat().st_size > 0, name
    markdown = (out / "results.md").read_text()
    # tool accuracy on test, hard_test, human_eval (none), human_eval_2 (none), then the test split's details
    # (arguments, ungrounded: not in the fake metrics, no-tool recall, chains)
    assert "| good | embedded:gemma-3-270m | 8 | 0.0005 | full | tools | 50.0% | 50.0% | n/a | n/a | 50.0% | n/a | 25.0% | 12.5% | 3 | 100 | 0.5 | finished |" in markdown
    assert "tool acc human_eval |" in markdown.splitlines()[0] and "tool acc human_eval_2" in markdown.splitlines()[0]

    # Run again: nothing re-runs (finished is skipped, failed waits for --retry-failed).
    capsys.readouterr()
    run_study(study, runs, out_dir=out, notebooks_dir=notebooks)
    assert calls(runs, "broken-arm") == ["02 t"] and calls(runs, "good") == ["02 t", "03 model"]
    printed = capsys.readouterr().out
    assert "good: finished, skipped" in printed and "failed before" in printed

    # A changed recipe makes the finished arm stale; aggregate-only runs nothing and says so.
    good.write_text(good.read_text().replace("lora_r: 8", "lora_r: 16"))
    rows = run_study(study, runs, execute=False, out_dir=out, notebooks_dir=notebooks)
    assert rows[1]["status"] == "changed" and calls(runs, "good") == ["02 t", "03 model"]


def test_time_budget_stops_between_arms(tmp_path, study_files, capsys):
    notebooks, good, broken = study_files
    runs = tmp_path / "runs"
    study = StudyConfig(name="t", arms=[str(broken), str(good)])
    rows = run_study(study, runs, time_budget_s=0.5, notebooks_dir=notebooks)
    assert calls(runs, "broken-arm") == ["02 t"] and calls(runs, "good") == []
    assert rows[1]["status"] == "todo" and "time budget" in capsys.readouterr().out


def test_every_arm_is_validated_before_anything_runs(tmp_path, study_files):
    notebooks, good, _ = study_files
    typo = write_arm(tmp_path / "arms", "typo", learning_rte=1e-4)
    with pytest.raises(ConfigError, match="learning_rte"):
        run_study(StudyConfig(name="t", arms=[str(good), str(typo)]), tmp_path / "runs", notebooks_dir=notebooks)
    assert not (tmp_path / "runs").exists()
    twin = write_arm(tmp_path, "good")
    with pytest.raises(ConfigError, match="share a name"):
        run_study(StudyConfig(name="t", arms=[str(good), str(twin)]), tmp_path / "runs", notebooks_dir=notebooks)


def fake_finished_run(runs: Path, arm_path: Path, accuracy: float) -> None:
    arm = load_arm(arm_path)
    run_dir = runs / arm.name
    dump_yaml(arm, run_dir / "arm.yaml")
    (run_dir / "metrics.json").write_text(json.dumps({"train_loss": [], "wall_time_s": 1.0}))
    (run_dir / "eval").mkdir()
    (run_dir / "eval" / "results.json").write_text(json.dumps({"model": {"test": {"tool_accuracy": accuracy}}}))


def test_arm_status(tmp_path):
    arm_path = write_arm(tmp_path, "a", lora_r=8)
    arm, run_dir = load_arm(arm_path), tmp_path / "runs" / "a"
    assert arm_status(arm, run_dir) == "todo"
    fake_finished_run(tmp_path / "runs", arm_path, 0.9)
    assert arm_status(arm, run_dir) == "finished"
    # Where the run was written is not part of the recipe; the recipe is.
    assert arm_status(load_arm(arm_path, output_root="/elsewhere"), run_dir) == "finished"
    assert arm_status(load_arm(arm_path, lora_r=16), run_dir) == "changed"
    (run_dir / "FAILED.txt").write_text("boom")
    assert arm_status(arm, run_dir) == "failed"


def test_cli_aggregate_only(tmp_path, capsys):
    done, todo = write_arm(tmp_path, "done-arm"), write_arm(tmp_path, "todo-arm")
    fake_finished_run(tmp_path / "runs", done, 0.75)
    code = ablation.main(["--arms", str(done), str(todo), "--name", "cli", "--runs-root", str(tmp_path / "runs"),
                          "--aggregate-only"])
    printed = capsys.readouterr()
    assert code == 1 and "not finished: todo-arm" in printed.err
    assert "| done-arm |" in printed.out and "75.0%" in printed.out
    assert (tmp_path / "runs" / "ablation" / "cli" / "results.csv").exists()
    assert ablation.main(["--arms", str(tmp_path / "missing.yaml"), "--aggregate-only"]) == 2


def test_summary_tarball_carries_finished_arms_to_a_fresh_machine(tmp_path, capsys):
    done = write_arm(tmp_path, "done-arm")
    fake_finished_run(tmp_path / "old", done, 0.75)
    (tmp_path / "old" / "done-arm" / "adapter").mkdir()
    (tmp_path / "old" / "done-arm" / "adapter" / "weights.bin").write_bytes(b"big")
    tar = tmp_path / "out" / "summary.tar.gz"
    assert ablation.main(["--arms", str(done), "--runs-root", str(tmp_path / "old"), "--aggregate-only",
                          "--summary-tar", str(tar)]) == 0
    # The fresh machine: restore, and the arm is finished without training (aggregate-only would say so too).
    fresh = tmp_path / "fresh"
    assert ablation.main(["--arms", str(done), "--runs-root", str(fresh), "--restore", str(tar),
                          "--aggregate-only"]) == 0
    assert sorted(str(p.relative_to(fresh)) for p in (fresh / "done-arm").rglob("*") if p.is_file()) == \
        ["done-arm/arm.yaml", "done-arm/eval/results.json", "done-arm/metrics.json"]
    assert "restored 3 files" in capsys.readouterr().out
    # Nothing already there is overwritten.
    (fresh / "done-arm" / "metrics.json").write_text("{}")
    assert ablation.restore_summary(tar, fresh) == []


def test_the_04_notebook_tabulates_finished_runs(tmp_path):
    arm = write_arm(tmp_path, "nb-arm", lora_r=8)
    fake_finished_run(tmp_path / "runs", arm, 0.625)
    executed = run_notebook("04_ablation", tmp_path / "04.ipynb", {
        "arms": [str(arm)], "study_name": "nb", "execute": False, "runs_root": str(tmp_path / "runs")}, progress=False)
    outputs = [o for c in json.loads(executed.read_text())["cells"] for o in c.get("outputs", [])]
    texts = "".join("".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/markdown", "")) for o in outputs)
    assert "nb-arm: embedded:gemma-3-270m, rank 8, lr 0.0002, train examples full, prompt tools -> finished" in texts
    assert "| nb-arm |" in texts and "62.5%" in texts
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 3
    assert (tmp_path / "runs" / "ablation" / "nb" / "results.csv").exists()


def test_study_sets_load_and_name_existing_arms():
    sets = sorted((REPO_ROOT / "configs" / "ablation").glob("*.yaml"))
    assert {p.stem for p in sets} >= {"local-gpu", "kaggle-t4", "cpu-demo"}
    for path in sets:
        study = load_study(path)
        for arm in study.arms:
            load_arm(REPO_ROOT / arm)  # exists and is a valid arm
    local = load_study(REPO_ROOT / "configs" / "ablation" / "local-gpu.yaml")
    assert len(local.arms) >= 7 and local.evaluate["routers"] == ["model"]
    assert len(load_study(REPO_ROOT / "configs" / "ablation" / "kaggle-t4.yaml").arms) == 4


def test_study_config_rejects_unknown_keys(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"arms": ["a.yaml"], "routers": ["model"]}))
    with pytest.raises(ConfigError, match="routers"):
        load_study(path)
    path.write_text(yaml.safe_dump({"arms": ["a.yaml"]}))
    assert load_study(path).name == "s" and load_study(path, name="x").name == "x"


def test_wandb_is_gated_and_logs_one_group(tmp_path, monkeypatch):
    for env, expected in [({}, False), ({"WANDB_MODE": "disabled", "WANDB_API_KEY": "k"}, False),
                          ({"WANDB_API_KEY": "k"}, True), ({"WANDB_MODE": "offline"}, True)]:
        monkeypatch.delenv("WANDB_MODE", raising=False)
        monkeypatch.delenv("WANDB_API_KEY", raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        assert ablation.wandb_enabled() is expected, env

    inits = []

    class FakeRun:
        def __init__(self, **kwargs):
            inits.append(kwargs)
            self.summary = {}
            kwargs["summary"] = self.summary

        def finish(self):
            inits[-1]["finished"] = True

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=lambda **kw: FakeRun(**kw)))
    arms = [load_arm(write_arm(tmp_path, "a")), load_arm(write_arm(tmp_path, "b"))]
    rows = [{"arm": "a", "status": "finished", "test.tool_accuracy": 0.9, "model": "m"},
            {"arm": "b", "status": "failed"}]
    ablation.log_to_wandb("study-x", arms, rows)
    assert len(inits) == 1 and inits[0]["group"] == "study-x" and inits[0]["name"] == "a"
    assert inits[0]["summary"] == {"test.tool_accuracy": 0.9} and inits[0]["finished"]


def test_the_04_notebook_parameters_cell_matches_ablation_parameters():
    source = (REPO_ROOT / "notebooks" / "04_ablation.py").read_text(encoding="utf-8")
    cell = source.split('# %% tags=["parameters"]\n', 1)[1].split("\n# %%", 1)[0]
    namespace: dict = {}
    exec(cell, {}, namespace)
    assert namespace == ablation.AblationConfig().__dict__


def test_the_04_notebook_rejects_an_unknown_parameter(tmp_path):
    from toolforge.jobs.notebooks import NotebookError

    with pytest.raises(NotebookError, match="unknown key.*arm_sets"):
        run_notebook("04_ablation", tmp_path / "04.ipynb", {"arm_sets": "x.yaml", "execute": False}, progress=False)


def test_loss_curves_plot_one_run_or_many(tmp_path):
    from toolforge.train.loss_curves import plot_loss_curves

    metrics = {"train_loss": [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}],
               "eval_loss": [{"step": 2, "loss": 1.5}], "best_step": 2}
    for runs in ({"a": metrics}, {"a": metrics, "b": {}, "c": metrics}, {}):
        path = plot_loss_curves(runs, tmp_path / f"{len(runs)}.png")
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
