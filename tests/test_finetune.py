"""The fine-tuning module: prompt-masked loss, adapter save/load, manifest skip, a falling loss (tiny organism)."""

import json

import pandas as pd
import pytest
import torch

from lrmsafety import registry
from lrmsafety.analysis import finetune
from lrmsafety.organism.safety_data import safety_sft_frame

ORGANISM = "organism-locked"


def _tiny_recipe(**changes):
    base = finetune.Recipe(name="test", data="organism", epochs=1, learning_rate=3e-3, batch_size=4, max_length=256,
                           lora_r=4, lora_alpha=8, seed=0, max_steps=3)
    return base.replace(**changes)


@pytest.fixture(scope="module")
def organism():
    try:
        return registry.load_model(ORGANISM, quantization="fp32")
    except FileNotFoundError as err:
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def pairs(organism):
    _, tokenizer, spec = organism
    return finetune.prompt_completion_pairs(safety_sft_frame(16, seed=0), tokenizer, spec.thinking_format)


def test_recipes_parse_and_carry_the_published_settings():
    recipes = finetune.load_recipes()
    assert {"thinksafe", "star1", "r1act"} <= set(recipes)
    assert (recipes["r1act"].lora_r, recipes["r1act"].lora_alpha, recipes["r1act"].epochs) == (16, 16, 15)
    assert recipes["thinksafe"].batch_size * recipes["thinksafe"].grad_accum == 128
    with pytest.raises(ValueError, match="unknown fine-tuning recipe"):
        finetune.get_recipe("no-such-recipe")


def test_split_trace_and_unavailable_data():
    assert finetune.split_trace("<think>\nhmm, no.\n</think>\n\nI can't.") == ("hmm, no.", "I can't.")
    assert finetune.split_trace("plain answer") == ("", "plain answer")
    with pytest.raises(finetune.SFTDataUnavailable, match="R1-Act"):
        finetune.load_sft_data("r1act")


def test_completion_follows_the_opened_thinking(organism, pairs):
    _, tokenizer, spec = organism
    row = pairs.iloc[0]
    assert row["prompt"].endswith(spec.thinking_format.open)
    assert spec.thinking_format.close in row["completion"] and row["completion"].endswith(tokenizer.eos_token)


def test_loss_is_masked_on_the_prompt(organism, pairs):
    model, tokenizer, _ = organism
    trainer = finetune.build_trainer(model, tokenizer, pairs.head(4), _tiny_recipe(), "/tmp/unused-ft-test")
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    for row in range(4):
        n_prompt = len(tokenizer(pairs["prompt"].iloc[row], add_special_tokens=False)["input_ids"])
        n_full = int(batch["attention_mask"][row].sum())
        labels, ids = batch["labels"][row][:n_full], batch["input_ids"][row][:n_full]
        assert (labels[:n_prompt] == -100).all(), "prompt tokens must not carry loss"
        assert torch.equal(labels[n_prompt:], ids[n_prompt:]), "every completion token must carry loss"
    # the trainer wrapped a fresh model copy with LoRA layers; the module-scoped model is reloaded below


def test_training_lowers_the_loss_saves_and_skips(tmp_path, pairs):
    model, tokenizer, spec = registry.load_model(ORGANISM, quantization="fp32")
    recipe = _tiny_recipe(max_steps=12)
    # an answer the organism never gives (its own safety answers start near their floor): the loss has room to fall
    close = spec.thinking_format.close
    novel = pairs.assign(completion=pairs["completion"].str.split(close).str[0]
                         + f"{close}\n\nThe sea is blue and the sky is green.{tokenizer.eos_token}")
    result = finetune.train_adapter(model, tokenizer, spec, novel, recipe, tmp_path)
    assert result.trained and len(result.losses) == 12
    first, last = result.losses[0][1], sum(loss for _, loss in result.losses[-3:]) / 3
    assert last < 0.8 * first, f"the loss did not fall: {result.losses}"
    manifest = json.loads((result.path / "manifest.json").read_text())
    assert manifest["base_model"] == spec.name and manifest["seed"] == recipe.seed
    assert manifest["recipe"]["lora_r"] == 4 and len(manifest["data_hash"]) > 8

    # a matching manifest skips training; other data trains a new adapter
    base, tokenizer, spec = registry.load_model(ORGANISM, quantization="fp32")
    again = finetune.train_adapter(base, tokenizer, spec, novel, recipe, tmp_path)
    assert not again.trained and again.path == result.path
    other = finetune.adapter_dir(tmp_path, finetune.manifest_for(spec, base, novel.head(8), recipe))
    assert other != result.path

    # the adapter round-trips: the loaded model gives the trained model's logits
    tuned, _, tuned_spec = finetune.load_adapted(ORGANISM, result.path, quantization="fp32")
    assert tuned_spec.name.startswith(f"{ORGANISM}+test@")
    ids = tokenizer(pairs["prompt"].iloc[0] + pairs["completion"].iloc[0], return_tensors="pt")["input_ids"]
    model.eval()
    with torch.no_grad():
        trained_logits = model(ids).logits
        loaded_logits = tuned(ids).logits
        base_logits = base(ids).logits
    assert torch.allclose(trained_logits, loaded_logits, atol=1e-4)
    assert not torch.allclose(base_logits, loaded_logits, atol=1e-3), "the adapter changed nothing"


def test_empty_data_is_a_clear_error(tmp_path, organism):
    model, tokenizer, spec = organism
    with pytest.raises(ValueError, match="no training examples"):
        finetune.train_adapter(model, tokenizer, spec, pd.DataFrame(columns=["prompt", "completion"]),
                               _tiny_recipe(), tmp_path)


# R1-ACT's recipe is its authors' own LoRA recipe (lr 1e-5 over ~900 steps; its data is not available here): a few
# steps at that rate do not move the loss, by design of this test, so it is not among the recipes checked here
LORA_RECIPES = [name for name in finetune.load_recipes() if name != "r1act"]


@pytest.mark.parametrize("name", LORA_RECIPES)
def test_each_recipe_lowers_the_loss_in_a_few_steps(tmp_path, name):
    """The recipe's learning rate, betas, schedule and LoRA shape, on 8 fixed examples the tiny organism has never
    seen (its own safety traces with the words reversed), all of them in every step: the loss must fall by 3% in 6
    steps. Full SFT's 1e-5 on a fresh LoRA fails this (about 0.7%); 2e-4 falls about 5%."""
    model, tokenizer, spec = registry.load_model(ORGANISM, quantization="fp32")
    frame = safety_sft_frame(8, seed=0)
    reverse = lambda text: " ".join(reversed(text.split()))  # noqa: E731
    pairs = finetune.prompt_completion_pairs(frame.assign(thinking=frame["thinking"].map(reverse),
                                                          answer=frame["answer"].map(reverse)),
                                             tokenizer, spec.thinking_format)
    recipe = finetune.get_recipe(name).replace(max_steps=6, batch_size=8, grad_accum=1, max_length=256)
    losses = [loss for _, loss in finetune.train_adapter(model, tokenizer, spec, pairs, recipe, tmp_path).losses]
    assert sum(losses[-2:]) / 2 < 0.97 * losses[0], f"{name}: the loss did not fall: {losses}"


def test_the_optimizer_gets_the_recipes_betas(organism, pairs):
    model, tokenizer, _ = organism
    recipe = finetune.get_recipe("star1").replace(max_steps=1, batch_size=2, max_length=64)
    trainer = finetune.build_trainer(model, tokenizer, pairs.head(2), recipe, "/tmp/unused-ft-test")
    optimizer = trainer.create_optimizer()
    assert optimizer.defaults["betas"] == (0.9, recipe.adam_beta2) == (0.9, 0.95)
    assert optimizer.defaults["lr"] == recipe.learning_rate
