"""Arms: inheritance (base + what changes), its errors, and the committed arms' resolution."""
import pytest
import yaml

from toolforge.train.arm import ArmConfig, arm_parameters, arm_values, load_arm
from toolforge.config import ConfigError, to_dict
from toolforge.paths import REPO_ROOT

ARMS = REPO_ROOT / "configs" / "arms"


def write(folder, name, text):
    path = folder / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_child_arm_changes_only_what_it_sets(tmp_path):
    write(tmp_path, "root", "name: root\nlora_r: 32\nbatch_size: 4\n")
    write(tmp_path, "mid", "base: root\nname: mid\nbatch_size: 8\nlearning_rate: 1e-3\n")
    leaf = write(tmp_path, "leaf", "base: mid\nname: leaf\nlora_r: 8\n")
    assert arm_values(leaf) == {"name": "leaf", "lora_r": 8, "batch_size": 8, "learning_rate": "1e-3"}
    arm = load_arm(leaf, seed=7)
    assert arm == ArmConfig(name="leaf", lora_r=8, batch_size=8, learning_rate=1e-3, seed=7)
    # 02's papermill parameters are the resolved arm, every field (no `base`).
    assert arm_parameters(leaf) == (load_arm(leaf), to_dict(load_arm(leaf)))


@pytest.mark.parametrize("files, message", [
    ({"leaf": "base: nowhere\nname: leaf\n"}, r"leaf.yaml: base: no arm 'nowhere' \(.*nowhere.yaml does not exist\)"),
    ({"leaf": "base: a\nname: leaf\n", "a": "base: b\nname: a\n", "b": "base: a\nname: b\n"},
     r"leaf.yaml: base: the arms inherit in a cycle: leaf -> a -> b -> a"),
    ({"leaf": "base: leaf\nname: leaf\n"}, r"cycle: leaf -> leaf"),
    ({"leaf": "base: root\nname: leaf\nlora_rank: 8\n", "root": "name: root\n"}, r"leaf.yaml: unknown key\(s\) \['lora_rank'\]"),
    ({"leaf": "base: root\nname: leaf\n", "root": "name: root\nlora_r: big\n"}, r"root.yaml: lora_r: expected an integer"),
    ({"leaf": "base: [root]\nname: leaf\n"}, r"leaf.yaml: base: expected the name of an arm"),
    ({"leaf": "name: leaf\nlora_r: [8\n"}, r"leaf.yaml: not valid YAML"),
])
def test_bad_inheritance_fails_naming_the_file_and_the_field(tmp_path, files, message):
    for name, text in files.items():
        write(tmp_path, name, text)
    with pytest.raises(ConfigError, match=message):
        load_arm(tmp_path / "leaf.yaml")


def restated(path) -> dict:
    """The keys an arm file sets to the value it would have without them (its base's, or ArmConfig's
    default): lines that change nothing and hide what the arm changes."""
    own = yaml.safe_load(path.read_text(encoding="utf-8"))
    base = own.pop("base", None)
    under = to_dict(load_arm(path.parent / f"{base}.yaml") if base else ArmConfig())
    resolved = to_dict(load_arm(path))
    return {key: value for key, value in own.items() if key != "name" and resolved[key] == under[key]}


@pytest.mark.parametrize("path", sorted(ARMS.glob("*.yaml")), ids=lambda p: p.stem)
def test_no_committed_arm_restates_its_base_or_the_defaults(path):
    assert restated(path) == {}


def test_the_gemma_arms_change_gemma270m_full_and_the_kaggle_arms_mistral_r64():
    for path in sorted(ARMS.glob("*.yaml")):
        base = yaml.safe_load(path.read_text(encoding="utf-8")).get("base")
        if path.stem.startswith("gemma270m-") and path.stem != "gemma270m-full":
            assert base == "gemma270m-full", path.stem
        if path.stem in ("mistral-r16", "mistral-lr5e4", "qwen7b-r64"):
            assert base == "mistral-r64", path.stem


def test_the_arms_resolve_to_what_they_were_before_inheritance():
    # Pinned: the resolved fields of three arms as written out in full (gemma270m-r8 with the default GPU
    # recipe of r 128 over 5 epochs as its base).
    assert load_arm(ARMS / "gemma270m-r8.yaml") == ArmConfig(
        name="gemma270m-r8", quantization="none", lora_r=8, lora_alpha=16, epochs=5.0, batch_size=64,
        warmup_ratio=0.05, eval_steps=58)
    assert load_arm(ARMS / "qwen7b-r64.yaml") == ArmConfig(
        name="qwen7b-r64", model="Qwen/Qwen2.5-7B-Instruct", quantization="4bit", batch_size=4,
        gradient_accumulation_steps=4, gradient_checkpointing=True, max_eval_examples=300)
    assert load_arm(ARMS / "mistral-lr5e4.yaml") == ArmConfig(
        name="mistral-lr5e4", model="mistralai/Mistral-7B-Instruct-v0.3", quantization="4bit", learning_rate=5e-4,
        batch_size=4, gradient_accumulation_steps=4, gradient_checkpointing=True, max_eval_examples=300)
