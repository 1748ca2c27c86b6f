"""LoRA on the upper layers with the frozen lower layers' outputs computed once: the same loss and the
same gradients as running the whole model, on a tiny Gemma 3 whose layers include both attention kinds
(sliding-window and full) and whose window is shorter than the examples."""
import pytest
import torch

from toolforge.train.encoding import PadCollator, encode_example
from toolforge.examples import Example
from toolforge.train.frozen_layers import first_trained_layer, lower_layer_states, skipping_lower_layers
from toolforge.train.loss import answer_loss
from toolforge.registry import load_registry

QUERIES = [
    ("weather in Paris tomorrow?", [{"name": "weather", "arguments": {"location": "Paris"}}]),
    ("thanks, that's all", []),
    ("say good night in french", [{"name": "translate", "arguments": {"text": "good night", "to_lang": "fr"}}]),
    ("weather in Oslo and convert 5 km to mi", [{"name": "weather", "arguments": {"location": "Oslo"}},
                                                {"name": "unit_converter", "arguments": {"value": 5, "from": "km", "to": "mi"}}]),
    ("define ephemeral", [{"name": "dictionary", "arguments": {"word": "ephemeral"}}]),
]


@pytest.fixture(scope="module")
def six_layer_model(tiny_model_dir):
    """Six layers: five sliding-window (window 4 tokens) and one full-attention, as Gemma 3 alternates them."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    config = Gemma3TextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=6,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=256,
                              sliding_window=4, pad_token_id=tokenizer.pad_token_id)
    assert "full_attention" in config.layer_types and "sliding_attention" in config.layer_types[3:]
    base = Gemma3ForCausalLM(config)
    first = first_trained_layer(base, 3)
    assert first == 3 and first_trained_layer(base, 0) == 0 and first_trained_layer(base, 6) == 0
    # Random A and B (the default B = 0 would make every gradient of A zero) and no dropout.
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, init_lora_weights=False, task_type="CAUSAL_LM",
                      target_modules=["q_proj", "v_proj", "down_proj"], layers_to_transform=[3, 4, 5], layers_pattern="layers")
    model = get_peft_model(base, lora)
    rows = [encode_example(Example(id=str(i), query=q, tool_calls=c), tokenizer, load_registry(), "bare")
            for i, (q, c) in enumerate(QUERIES)]
    for i, row in enumerate(rows):
        row["row"] = i
    return model, tokenizer, rows


def loss_and_grads(model, batch):
    model.zero_grad()
    loss = answer_loss(model, batch)
    loss.backward()
    return loss.item(), {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}


def test_cached_lower_layers_give_the_same_loss_and_gradients(six_layer_model):
    model, tokenizer, rows = six_layer_model
    model.train()
    states = lower_layer_states(model, rows, 3, batch_size=2, progress=False)  # batches of other lengths than training's
    assert [s.shape[0] for s in states] == [len(r["input_ids"]) for r in rows]
    plain = PadCollator(tokenizer.pad_token_id)(rows)
    cached = PadCollator(tokenizer.pad_token_id, frozen_states=states, first_trained_layer=3)(rows)
    assert cached["frozen_states"].shape == (*plain["input_ids"].shape, 32)
    assert max(len(r["input_ids"]) for r in rows) > 4  # the sliding window is shorter than the rows
    loss, grads = loss_and_grads(model, plain)
    cached_loss, cached_grads = loss_and_grads(model, cached)
    assert cached_loss == pytest.approx(loss, rel=1e-5)
    assert grads.keys() == cached_grads.keys() and len(grads) == 3 * 3 * 2  # 3 layers x 3 modules x A, B
    for name, grad in grads.items():
        assert grad.abs().max() > 0, name
        assert torch.allclose(cached_grads[name], grad, rtol=1e-4, atol=1e-6 * grad.abs().max().item()), name
    # The model's lower layers are back after the cached call: a plain call gives the plain loss again.
    assert loss_and_grads(model, plain)[0] == pytest.approx(loss, rel=1e-6)


def test_skipping_restores_the_layers_even_when_the_call_fails(six_layer_model):
    model, _, _ = six_layer_model
    layers = list(model.get_base_model().model.layers)
    with pytest.raises(RuntimeError, match="midway"):
        with skipping_lower_layers(model, 3):
            assert model.get_base_model().model.layers[0] is not layers[0]
            raise RuntimeError("midway")
    assert list(model.get_base_model().model.layers) == layers


def test_the_loss_over_a_vocabulary_is_the_cross_entropy_of_those_logits(six_layer_model):
    import torch.nn.functional as F

    from toolforge.train.encoding import IGNORE_INDEX
    from toolforge.train.loss import data_vocabulary

    model, tokenizer, rows = six_layer_model
    batch = PadCollator(tokenizer.pad_token_id)(rows)
    vocabulary = data_vocabulary(rows)
    assert vocabulary.tolist() == sorted({t for r in rows for t in r["input_ids"]})
    with torch.no_grad():
        everything = torch.arange(model.get_base_model().config.vocab_size)
        assert answer_loss(model, batch, vocabulary=everything).item() == pytest.approx(answer_loss(model, batch).item(), rel=1e-6)
        # By hand: the model's logits at the positions that predict an answer token, restricted to the vocabulary.
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        targets = batch["labels"][:, 1:]
        trained = targets != IGNORE_INDEX
        index = {token: i for i, token in enumerate(vocabulary.tolist())}
        expected = F.cross_entropy(logits[trained][:, vocabulary],
                                   torch.tensor([index[t] for t in targets[trained].tolist()]))
        assert answer_loss(model, batch, vocabulary=vocabulary).item() == pytest.approx(expected.item(), rel=1e-5)
        with pytest.raises(ValueError, match="not in the loss vocabulary"):
            answer_loss(model, batch, vocabulary=vocabulary[vocabulary != rows[0]["input_ids"][-1]])
