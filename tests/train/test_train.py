"""Training: arm validation, the label mask, the answer-only loss, the CPU path end to end on a tiny
Gemma 3, the run folder, best checkpoint and early stopping, merge, W&B switch, adapter precision."""
import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from transformers import TrainerCallback

from toolforge.train.arm import ArmConfig, load_arm
from toolforge.config import ConfigError, dump_yaml
from toolforge.examples import Example, write_jsonl
from toolforge.paths import REPO_ROOT
from toolforge.prompt import format_answer
from toolforge.registry import load_registry
from toolforge.train.encoding import IGNORE_INDEX, PadCollator, encode_example
from toolforge.train.loss import answer_loss
from toolforge.train.precision import ensure_fp32_trainable, precision_plan
from toolforge.examples import seeded_sample as subset  # what training samples its data-size arms with
from toolforge.run import RunDir
from toolforge.config import args_to_values
from toolforge.train.job import build_parser, check_inputs, main, train
from toolforge.train.trainer import training_arguments, wandb_enabled

REG = load_registry()
CALLS = [
    ("weather in Paris tomorrow?", [{"name": "weather", "arguments": {"location": "Paris"}}]),
    ("what is 15% of 80", [{"name": "calculator", "arguments": {"expression": "0.15 * 80"}}]),
    ("thanks, that's all", []),
    ("define ephemeral", [{"name": "dictionary", "arguments": {"word": "ephemeral"}}]),
    ("say good night in french", [{"name": "translate", "arguments": {"text": "good night", "to_lang": "fr"}}]),
    ("weather in Oslo and convert 5 km to mi", [{"name": "weather", "arguments": {"location": "Oslo"}},
                                                {"name": "unit_converter", "arguments": {"value": 5, "from": "km", "to": "mi"}}]),
    ("who was Ada Lovelace", [{"name": "wikipedia", "arguments": {"query": "Ada Lovelace"}}]),
    ("bitcoin price today", [{"name": "web_search", "arguments": {"query": "bitcoin price today"}}]),
]


def examples(n: int, prefix: str = "ex") -> list[Example]:
    return [Example(id=f"{prefix}-{i}", query=CALLS[i % len(CALLS)][0], tool_calls=CALLS[i % len(CALLS)][1])
            for i in range(n)]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    write_jsonl(folder / "train.jsonl", examples(32, "tr"))
    write_jsonl(folder / "val.jsonl", examples(8, "va"))
    return folder


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from toolforge.model import load_tokenizer

    return load_tokenizer(tiny_model_dir, "gemma3_text")


def tiny_arm(tiny_model_dir, data_dir, out, **overrides) -> ArmConfig:
    values = dict(name="tiny", model=str(tiny_model_dir), data_dir=str(data_dir), output_root=str(out),
                  prompt_style="bare", lora_r=4, lora_alpha=8, batch_size=4, max_steps=6, eval_steps=3,
                  logging_steps=1, learning_rate=5e-3, warmup_ratio=0.0)
    values.update(overrides)
    return ArmConfig(**values)


@pytest.fixture(scope="module")
def trained_run(tiny_model_dir, data_dir, tmp_path_factory):
    arm = tiny_arm(tiny_model_dir, data_dir, tmp_path_factory.mktemp("runs"))
    return arm, train(arm, device="cpu")


# -- config validation ------------------------------------------------------------------------------
def test_every_arm_file_loads_and_is_named_after_its_file():
    files = sorted((REPO_ROOT / "configs" / "arms").glob("*.yaml"))
    assert {f.stem for f in files} >= {"qwen7b-r64", "mistral-r64", "mistral-r16", "mistral-lr5e4",
                                       "gemma270m-cpu-demo", "gemma270m-full", "gemma270m-r8", "gemma270m-r16",
                                       "gemma270m-lr5e4", "gemma270m-n500", "gemma270m-n1000", "gemma270m-bare"}
    for f in files:
        assert load_arm(f).name == f.stem


@pytest.mark.parametrize("overrides, field", [
    ({"lora_rank": 8}, "lora_rank"),
    ({"lora_r": "big"}, "lora_r"),
    ({"epochs": 0}, "epochs"),
    ({"quantization": "8bit"}, "quantization"),
    ({"target_modules": []}, "target_modules"),
    ({"mixed_precision": "fp8"}, "mixed_precision"),
])
def test_bad_arm_values_fail_naming_the_field(overrides, field):
    with pytest.raises(ConfigError, match=field):
        load_arm(None, **overrides)


def test_four_bit_or_fp16_on_a_cpu_fails_naming_the_field():
    with pytest.raises(ConfigError, match="quantization"):
        precision_plan("cpu", "4bit")
    with pytest.raises(ConfigError, match="mixed_precision"):
        precision_plan("cpu", "auto", "fp16")
    assert precision_plan("cpu", "auto").line.startswith("device: CPU: plain LoRA")


def test_bf16_on_a_cpu_only_where_it_multiplies_bf16_natively(monkeypatch, capsys):
    import toolforge.train.precision as precision

    monkeypatch.setattr(precision, "cpu_computes_bf16", lambda: True)
    plan = precision_plan("cpu", "auto", "bf16")
    assert plan.dtype == torch.float32 and plan.bf16 and "bfloat16" in plan.line  # float32 weights, bf16 compute
    with plan.autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    auto = precision_plan("cpu", "auto")  # auto stays float32 on a CPU
    with auto.autocast():
        assert not auto.bf16 and (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    monkeypatch.setattr(precision, "cpu_computes_bf16", lambda: False)
    plan = precision_plan("cpu", "auto", "bf16")
    assert plan.dtype == torch.float32 and not plan.bf16 and "no native bfloat16" in capsys.readouterr().out


def test_a_cpu_run_in_bf16_trains_and_writes_its_run(tiny_model_dir, data_dir, tmp_path, monkeypatch, capsys):
    import toolforge.train.precision as precision

    monkeypatch.setattr(precision, "cpu_computes_bf16", lambda: True)  # autocast runs anywhere, natively or not
    arm = tiny_arm(tiny_model_dir, data_dir, tmp_path, mixed_precision="bf16", lora_layers=1, name="bf16")
    metrics = train(arm, device="cpu")
    assert "computed in bfloat16" in capsys.readouterr().out
    assert metrics["steps"] == 6 and all(math.isfinite(e["loss"]) for e in metrics["eval_loss"])
    assert metrics["train_loss"][-1]["loss"] < metrics["train_loss"][0]["loss"]
    assert RunDir(arm.run_dir).is_trained()


def test_missing_data_file_fails_naming_data_dir(tmp_path, tiny_model_dir):
    with pytest.raises(ConfigError, match="data_dir:.*train.jsonl"):
        check_inputs(ArmConfig(model=str(tiny_model_dir), data_dir=str(tmp_path)))


def test_model_not_loadable_offline_fails_naming_model(data_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="model: cannot load 'no-such-org/no-such-model'"):
        check_inputs(ArmConfig(model="no-such-org/no-such-model", data_dir=str(data_dir)))
    with pytest.raises(ConfigError, match="model:.*no config.json"):
        check_inputs(ArmConfig(model=str(data_dir), data_dir=str(data_dir)))


def test_cli_reports_a_bad_override_by_name(capsys):
    assert main(["--lora_r", "eight"]) == 2
    assert "lora_r" in capsys.readouterr().err


def test_overrides_are_read_as_yaml(capsys):
    args = build_parser().parse_args(["--lora_r", "8", "--prompt-style=bare", "--target_modules", "[q_proj, v_proj]"])
    assert args_to_values(ArmConfig, args) == {"lora_r": 8, "prompt_style": "bare", "target_modules": ["q_proj", "v_proj"]}
    args = build_parser().parse_args(["--target-modules", "q_proj", "v_proj", "--share-prompt-prefix", "false"])
    assert args_to_values(ArmConfig, args) == {"target_modules": ["q_proj", "v_proj"], "share_prompt_prefix": False}
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(["--lora_r"])
    assert stopped.value.code == 2 and "--lora-r" in capsys.readouterr().err


def test_notebook_parameters_cell_matches_the_arm_defaults():
    source = (REPO_ROOT / "notebooks" / "02_train_qlora.py").read_text(encoding="utf-8")
    cell = source.split('# %% tags=["parameters"]\n', 1)[1].split("\n# %%", 1)[0]
    namespace: dict = {}
    exec(cell, {}, namespace)
    assert namespace == ArmConfig().__dict__


def test_subset_is_seeded_and_keeps_file_order():
    exs = examples(20)
    a, b = subset(exs, 5, seed=1), subset(exs, 5, seed=1)
    assert [e.id for e in a] == [e.id for e in b] and len(a) == 5
    assert [int(e.id.split("-")[1]) for e in a] == sorted(int(e.id.split("-")[1]) for e in a)
    assert subset(exs, 0, seed=1) == exs


# -- the label mask and the loss ------------------------------------------------------------------------
@pytest.mark.parametrize("style", ["tools", "bare"])
def test_only_the_answer_and_its_end_of_turn_are_trained(tokenizer, style):
    exs = examples(len(CALLS))
    batch = PadCollator(tokenizer.pad_token_id, pad_to_multiple_of=8, share_prefix=True)(
        [encode_example(ex, tokenizer, REG, style) for ex in exs])
    for row, ex in enumerate(exs):
        labels = batch["labels"][row]
        trained = tokenizer.decode(labels[labels != IGNORE_INDEX])
        assert trained == format_answer(ex.tool_calls) + "<end_of_turn>"
        # the trained tokens are one contiguous run right before the padding
        positions = (labels != IGNORE_INDEX).nonzero().flatten()
        assert positions.tolist() == list(range(positions[0], positions[-1] + 1))
        assert int(batch["attention_mask"][row].sum()) == positions[-1] + 1
    assert batch["input_ids"].shape[1] % 8 == 0
    prompt = tokenizer.decode(batch["input_ids"][0, :batch["shared_prefix_len"]])
    assert prompt.startswith("<bos><start_of_turn>user\n")
    if style == "tools":
        assert "Tools:" in prompt and "unit_converter(" in prompt  # the system prompt is the shared part


def test_answer_loss_equals_the_models_loss_with_and_without_a_shared_prefix(tiny_model_dir, tokenizer):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    rows = [encode_example(ex, tokenizer, REG, "tools") for ex in examples(4)]
    plain = PadCollator(tokenizer.pad_token_id)(rows)
    shared = PadCollator(tokenizer.pad_token_id, share_prefix=True)(rows)
    assert shared["shared_prefix_len"] > 200  # the tool list
    reference = model(**plain).loss
    losses, grads = [], []
    for batch in (plain, shared):
        model.zero_grad()
        loss = answer_loss(model, batch)
        loss.backward()
        losses.append(loss.item())
        grads.append(model.model.layers[0].self_attn.q_proj.weight.grad.clone())
    assert losses[0] == pytest.approx(reference.item(), rel=1e-5)
    assert losses[1] == pytest.approx(reference.item(), rel=1e-5)
    assert torch.allclose(grads[0], grads[1], atol=1e-6 * grads[0].abs().max().item())


# -- the CPU path end to end ----------------------------------------------------------------------------
def test_cpu_training_writes_the_run_folder(trained_run):
    arm, metrics = trained_run
    run = arm.run_dir
    assert (run / "adapter" / "adapter_config.json").is_file() and (run / "adapter" / "tokenizer.json").is_file()
    assert not (run / "checkpoints").exists()
    assert load_arm(run / "arm.yaml") == arm
    saved = json.loads((run / "metrics.json").read_text())
    assert saved == metrics
    for key in ("train_loss", "eval_loss", "best_eval_loss", "best_step", "wall_time_s", "train_tokens",
                "train_tokens_per_s", "peak_memory_gb", "device", "n_train_examples", "epochs", "steps"):
        assert key in metrics, key
    assert metrics["device"] == "cpu" and metrics["steps"] == 6 and metrics["n_train_examples"] == 32
    assert [e["step"] for e in metrics["eval_loss"]] == [3, 6]
    losses = [e["loss"] for e in metrics["train_loss"]]
    assert all(math.isfinite(x) for x in losses) and len(losses) == 6
    assert metrics["eval_loss"][-1]["loss"] < metrics["eval_loss"][0]["loss"]  # it learns, even this tiny model
    assert metrics["best_eval_loss"] == min(e["loss"] for e in metrics["eval_loss"])
    # every trained example counts its non-pad tokens; the shared prefix is computed once per batch
    assert 0 < metrics["computed_tokens"] < metrics["train_tokens"]


def eval_loss_of(model, tokenizer, arm, vocabulary=None) -> float:
    from toolforge.examples import read_examples

    rows = [encode_example(ex, tokenizer, REG, arm.prompt_style) for ex in read_examples(arm.data_path / "val.jsonl")]
    batch = PadCollator(tokenizer.pad_token_id)(rows)
    with torch.no_grad():
        return answer_loss(model, batch, vocabulary=vocabulary).item()


def test_run_folder_loads_for_inference_with_the_best_weights(trained_run):
    from toolforge.model import load_for_inference

    arm, metrics = trained_run
    model, tokenizer = load_for_inference(arm.run_dir, device="cpu")
    assert not model.training and tokenizer.chat_template
    assert model.generation_config.eos_token_id == [1, 106]
    assert eval_loss_of(model, tokenizer, arm) == pytest.approx(metrics["best_eval_loss"], rel=1e-4)


def test_best_checkpoint_is_kept_and_training_stops_early_but_not_in_the_first_epoch(tiny_model_dir, tmp_path):
    from toolforge.model import load_for_inference

    # Validation asks the training queries for other queries' calls: what training teaches makes it worse,
    # so the validation loss rises after the first evaluations (by design, not by a learning rate's luck).
    # 32 examples in batches of 4: 8 steps an epoch, an evaluation every step. A patience counted in
    # evaluations (3) stopped such a run at step 4, half an epoch; counted in epochs it trains the first.
    write_jsonl(tmp_path / "data" / "train.jsonl", examples(32, "tr"))
    write_jsonl(tmp_path / "data" / "val.jsonl", [Example(id=f"va-{i}", query=query, tool_calls=CALLS[(i + 1) % len(CALLS)][1])
                                                  for i, (query, _) in enumerate(CALLS)])
    arm = tiny_arm(tiny_model_dir, tmp_path / "data", tmp_path, learning_rate=0.05, max_steps=40, eval_steps=1,
                   early_stopping_epochs=0.5, name="diverges")
    metrics = train(arm, device="cpu")
    worse = [e for e in metrics["eval_loss"] if e["step"] <= 8 and e["loss"] > metrics["best_eval_loss"]]
    assert len(worse) >= 3                                  # three evaluations without a new best inside epoch 1
    assert metrics["stopped_early"] and 8 <= metrics["steps"] < 40 and metrics["epochs"] >= 1
    assert metrics["steps"] == max(8, metrics["best_step"] + 4)  # stopped once 0.5 epochs (4 steps) passed the best
    last = metrics["eval_loss"][-1]
    assert last["loss"] > metrics["best_eval_loss"] and metrics["best_step"] < last["step"]
    model, tokenizer = load_for_inference(arm.run_dir, device="cpu")
    assert eval_loss_of(model, tokenizer, arm) == pytest.approx(metrics["best_eval_loss"], rel=1e-4)


def test_merge_writes_a_standalone_model(trained_run, tmp_path):
    from toolforge.model import load_for_inference
    from toolforge.train.merge import main as merge_main

    arm, metrics = trained_run
    assert merge_main([str(arm.run_dir), str(tmp_path / "merged")]) == 0
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    model, tokenizer = load_for_inference(tmp_path / "merged", device="cpu")
    assert eval_loss_of(model, tokenizer, arm) == pytest.approx(metrics["best_eval_loss"], rel=1e-4)
    assert merge_main([str(tmp_path / "nothing-here"), str(tmp_path / "out")]) == 2


# -- switches -----------------------------------------------------------------------------------------
def test_wandb_is_off_unless_asked():
    assert not wandb_enabled({})
    assert not wandb_enabled({"WANDB_MODE": "disabled", "WANDB_API_KEY": "k"})
    assert wandb_enabled({"WANDB_MODE": "offline"})
    assert wandb_enabled({"WANDB_API_KEY": "k"})


def test_training_arguments_keep_the_best_checkpoint_and_log_nowhere_by_default(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    plan = precision_plan("cpu", "auto")
    args = training_arguments(ArmConfig(output_root=str(tmp_path), eval_steps=7), plan, use_cpu=True,
                              output_dir=tmp_path / "checkpoints")
    assert args.report_to in ([], "none", ["none"])
    assert args.load_best_model_at_end and args.metric_for_best_model == "eval_loss"
    assert args.eval_steps == args.save_steps == 7 and not args.greater_is_better
    assert not args.gradient_checkpointing and not args.bf16


def test_fp16_training_gets_float32_adapters(tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.to(torch.bfloat16)  # what trl does to a quantized model's adapters
    assert ensure_fp32_trainable(model, fp16=False) == 0
    assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.bfloat16}
    assert ensure_fp32_trainable(model, fp16=True) == 4  # lora_A and lora_B of 2 layers
    assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}


# -- the run folder is written all or nothing (issue 9) -----------------------------------------------------
def run_files(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


class FailAtStep(TrainerCallback):
    """Raises at one step: a run that fails (or is interrupted) midway."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise RuntimeError("stopped midway on purpose")


def test_a_run_that_fails_midway_leaves_the_earlier_run_as_it_was(tiny_model_dir, data_dir, tmp_path):
    from toolforge.train.job import prepare

    first = tiny_arm(tiny_model_dir, data_dir, tmp_path, max_steps=2, eval_steps=2)
    train(first, device="cpu")
    (first.run_dir / "eval").mkdir()
    (first.run_dir / "eval" / "results.json").write_text("{}")  # the first run's evaluation
    before = run_files(first.run_dir)

    # The same run folder, another recipe (rank 8), failing at its third step.
    job = prepare(tiny_arm(tiny_model_dir, data_dir, tmp_path, lora_r=8, lora_alpha=16), device="cpu")
    job.trainer.add_callback(FailAtStep(3))
    with pytest.raises(RuntimeError, match="on purpose"):
        job.run()
    assert run_files(first.run_dir) == before
    assert load_arm(first.run_dir / "arm.yaml") == first and not RunDir(first.run_dir).staging.exists()


def test_a_finished_run_replaces_the_earlier_one_whole(tiny_model_dir, data_dir, tmp_path):
    first = tiny_arm(tiny_model_dir, data_dir, tmp_path, max_steps=2, eval_steps=2)
    train(first, device="cpu")
    (first.run_dir / "eval").mkdir()
    (first.run_dir / "eval" / "results.json").write_text("{}")
    second = tiny_arm(tiny_model_dir, data_dir, tmp_path, max_steps=2, eval_steps=2, lora_r=8, lora_alpha=16)
    train(second, device="cpu")
    assert load_arm(second.run_dir / "arm.yaml") == second
    assert json.loads((second.run_dir / "adapter" / "adapter_config.json").read_text())["r"] == 8
    assert not (second.run_dir / "eval").exists()  # it judged the old adapter
    assert sorted(p.name for p in second.run_dir.iterdir()) == ["adapter", "arm.yaml", "metrics.json", "registry.yaml"]


def test_a_commit_stopped_midway_leaves_no_arm_settings_beside_another_adapter(tmp_path):
    from toolforge.model import load_for_inference

    run_dir, staging = tmp_path / "run", RunDir(tmp_path / "run").staging
    (run_dir / "adapter").mkdir(parents=True)
    (run_dir / "adapter" / "adapter_config.json").write_text('{"r": 64}')
    dump_yaml(ArmConfig(name="old"), run_dir / "arm.yaml")
    (staging / "adapter").mkdir(parents=True)
    (staging / "adapter" / "adapter_config.json").write_text('{"r": 8}')
    dump_yaml(ArmConfig(name="new", lora_r=8), staging / "arm.yaml")
    # No metrics.json in staging: the commit stops after the new adapter is in place.
    with pytest.raises(FileNotFoundError):
        RunDir(run_dir).commit()
    assert json.loads((run_dir / "adapter" / "adapter_config.json").read_text()) == {"r": 8}
    assert not (run_dir / "arm.yaml").exists()
    with pytest.raises(ValueError, match="arm.yaml"):
        load_for_inference(run_dir, device="cpu")


def test_a_run_without_a_vocabulary_removes_the_earlier_runs(tmp_path):
    # a router must never decode over the token list (or the tools) of an earlier training of its folder

    run_dir, staging = tmp_path / "run", RunDir(tmp_path / "run").staging
    (staging / "adapter").mkdir(parents=True)
    (staging / "metrics.json").write_text("{}")
    dump_yaml(ArmConfig(name="new"), staging / "arm.yaml")
    (run_dir / "vocabulary.json").write_text('{"token_ids": [1, 2]}')
    (run_dir / "registry.yaml").write_text("tools: []")
    RunDir(run_dir).commit()
    assert sorted(p.name for p in run_dir.iterdir()) == ["adapter", "arm.yaml", "metrics.json"]


def test_the_cpu_recipe_trains_and_its_validation_loss_is_the_loaded_models(tiny_model_dir, data_dir, tmp_path):
    # LoRA on the top layer only (the frozen one below runs once per example) and the softmax over the
    # data's tokens: the validation loss it reports (over the data's tokens, through the cached layer) is
    # the loss of the saved router loaded the ordinary way, over the vocabulary the run saved for routing.
    from toolforge.examples import read_examples
    from toolforge.model import load_for_inference
    from toolforge.run import read_vocabulary

    arm = tiny_arm(tiny_model_dir, data_dir, tmp_path, lora_layers=1, loss_vocabulary="data", name="cpu-recipe")
    metrics = train(arm, device="cpu")
    config = json.loads((arm.run_dir / "adapter" / "adapter_config.json").read_text())
    assert config["layers_to_transform"] == [1]
    model, tokenizer = load_for_inference(arm.run_dir, device="cpu")
    vocabulary = read_vocabulary(arm.run_dir)
    rows = [encode_example(ex, tokenizer, REG, arm.prompt_style) for split in ("train", "val")
            for ex in read_examples(arm.data_path / f"{split}.jsonl")]
    assert vocabulary == sorted({t for row in rows for t in row["input_ids"]})  # every train and val token
    assert eval_loss_of(model, tokenizer, arm, torch.tensor(vocabulary)) == pytest.approx(metrics["best_eval_loss"], rel=1e-4)
    assert metrics["eval_loss"][-1]["loss"] < metrics["eval_loss"][0]["loss"]


def test_progress_lines_say_step_loss_and_time_left(capsys):
    from types import SimpleNamespace

    from toolforge.train.trainer import progress_callback, progress_line

    assert progress_line(40, 400, 80.0, {"loss": 0.31234, "epoch": 0.78}) == \
        "train: step 40/400 (10%), epoch 0.78, loss 0.3123, 1:20 elapsed, about 12:00 left"
    assert progress_line(200, 400, 4000.0, {"loss": 0.1, "epoch": 1.5}).endswith("1:06:40 elapsed, about 1:06:40 left")
    assert progress_line(225, 413, 99.0, {"eval_loss": 0.11041}) == "train: step 225/413 (54%), validation loss 0.1104"
    assert progress_line(413, 413, 99.0, {"train_runtime": 99.0}) is None  # the closing summary entry
    ticks = iter([100.0, 130.0])
    callback = progress_callback(clock=lambda: next(ticks))
    state = SimpleNamespace(global_step=10, max_steps=40, is_world_process_zero=True)
    callback.on_train_begin(None, state, None)
    callback.on_log(None, state, None, logs={"loss": 1.5, "epoch": 0.25})
    assert capsys.readouterr().out == "train: step 10/40 (25%), epoch 0.25, loss 1.5000, 0:30 elapsed, about 1:30 left\n"


def test_cpu_training_threads_follow_the_idle_cores_and_are_restored():
    # A scripted share: the machine goes busy (1 idle core of 2), then quiet again. Steps between looks
    # keep the threads they have; the end of training gives the threads back.
    from types import SimpleNamespace

    from toolforge.train.trainer import cpu_threads_callback

    class Share:
        answers = iter([1, 2])

        def threads(self):
            return next(self.answers)

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        callback = cpu_threads_callback(Share(), every=10)
        seen = []
        for step in (0, 5, 10):
            callback.on_step_begin(None, SimpleNamespace(global_step=step), None)
            seen.append(torch.get_num_threads())
        assert seen == [1, 1, 2]
        torch.set_num_threads(1)
        callback.on_train_end(None, None, None)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
