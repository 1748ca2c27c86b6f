"""The main job's runner, on fake notebooks: stages in order, skips, and stops at the first failure."""
import json

from test_notebooks import injected_parameters, write_arm, write_fake_notebooks
from toolforge.jobs import pipeline


def test_pipeline_runs_the_stages_that_exist_in_order(tmp_path, capsys):
    notebooks = write_fake_notebooks(tmp_path / "notebooks")  # 01, 02, 03; no 04 yet
    arm = write_arm(tmp_path, "demo", max_steps=2)
    runs, data = tmp_path / "runs", tmp_path / "data"
    code = pipeline.main(["--arm", str(arm), "--runs-root", str(runs), "--notebooks-dir", str(notebooks),
                          "--generate-param", f"out_dir={data}", "--generate-param", "n_examples=5",
                          "--evaluate-param", "routers=[model]", "--store-notebooks"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert (data / "generated.txt").read_text() == "5"
    assert (runs / "demo" / "calls.log").read_text().splitlines() == ["02", "03 model"]
    assert json.loads((runs / "demo" / "eval" / "results.json").read_text())["model"]["test"]["tool_accuracy"] > 0
    executed = sorted(p.name for p in (runs / "demo" / "notebooks").glob("*.ipynb"))
    assert executed == ["01_generate.ipynb", "02_train_qlora.ipynb", "03_evaluate.ipynb"]
    lines = out.splitlines()
    assert [line.split(" done in ")[0] for line in lines if line.startswith("[") and " done in " in line] == \
        ["[1/4] 01_generate", "[2/4] 02_train_qlora", "[3/4] 03_evaluate"]
    assert any("04_ablation: skipped" in line and "does not exist yet" in line for line in lines)
    # 03 judged the router on the whole human_eval and test splits (the main job's default), with the given routers.
    evaluated = injected_parameters(runs / "demo" / "notebooks" / "03_evaluate.ipynb")
    assert evaluated == {"arm": "demo", "run_dir": str(runs / "demo"), "splits": ["test", "human_eval"],
                         "max_examples": 0, "routers": ["model"]}
    # 02 ran with the resolved arm: every field.
    assert injected_parameters(runs / "demo" / "notebooks" / "02_train_qlora.ipynb")["max_steps"] == 2
    # --store-notebooks copied the executed notebooks beside their .py (nbval's references).
    stored = json.loads((notebooks / "02_train_qlora.ipynb").read_text())
    assert any("injected-parameters" in c["metadata"].get("tags", []) for c in stored["cells"])


def test_pipeline_stops_at_the_first_failure_and_says_where(tmp_path, capsys):
    notebooks = write_fake_notebooks(tmp_path / "notebooks")
    arm = write_arm(tmp_path, "demo")
    runs = tmp_path / "runs"
    code = pipeline.main(["--arm", str(arm), "--runs-root", str(runs), "--notebooks-dir", str(notebooks),
                          "--generate-param", "fail=true", "--generate-param", f"out_dir={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 1
    assert "01_generate FAILED" in err and "01 asked to fail" in err
    assert "runs/demo/notebooks/01_generate.ipynb" in err and (runs / "demo" / "notebooks" / "01_generate.ipynb").exists()
    assert not (runs / "demo" / "calls.log").exists()  # 02 never started


def test_pipeline_rejects_a_bad_arm_before_running_anything(tmp_path, capsys):
    notebooks = write_fake_notebooks(tmp_path / "notebooks")
    arm = write_arm(tmp_path, "demo", lora_rank=8)
    code = pipeline.main(["--arm", str(arm), "--runs-root", str(tmp_path / "runs"), "--notebooks-dir", str(notebooks),
                          "--generate-param", f"out_dir={tmp_path / 'data'}"])
    assert code == 2 and "lora_rank" in capsys.readouterr().err
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs").exists()


def test_pipeline_from_a_later_stage_skips_the_earlier_ones(tmp_path, capsys):
    notebooks = write_fake_notebooks(tmp_path / "notebooks")
    arm = write_arm(tmp_path, "demo")
    code = pipeline.main(["--arm", str(arm), "--runs-root", str(tmp_path / "runs"), "--notebooks-dir", str(notebooks),
                          "--from", "04_ablation"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0 and not (tmp_path / "runs" / "demo").exists()
    assert lines[:3] == [f"[{i}/4] {stage}: skipped (--from 04_ablation)"
                         for i, stage in enumerate(["01_generate", "02_train_qlora", "03_evaluate"], 1)]
