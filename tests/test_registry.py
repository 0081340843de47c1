"""The registry and load_model's errors and 4-bit path."""

import pytest
import torch
from tiny_models import build_tiny, tokenizer_for

from lrmsafety import registry as models


def test_registry_covers_the_papers_models():
    for name in ["deepseek-r1-distill-qwen-1.5b", "deepseek-r1-distill-qwen-7b", "deepseek-r1-distill-qwen-14b",
                 "deepseek-r1-distill-llama-8b", "qwen3-8b", "qwen3-1.7b", "qwen3-4b-thinking-2507",
                 "olmo-3-7b-think", "phi-4-reasoning", "phi-4-mini-reasoning", "gpt-oss-20b", "skywork-or1-7b",
                 "llama-guard-3-8b", "llama-guard-4-12b", "wildguard", "qwen3guard-gen-8b",
                 "harmbench-llama-2-13b-cls", "granite-guardian-3.3-8b"]:
        assert name in models.REGISTRY
    assert models.get_spec("Qwen/Qwen3-8B").name == "qwen3-8b"  # hub ids resolve too
    assert models.REGISTRY["qwen3-8b"].sampling.generate_kwargs() == {
        "do_sample": True, "temperature": 0.6, "top_p": 0.95, "top_k": 20}


def test_unknown_name_suggests_close_matches():
    with pytest.raises(KeyError, match="qwen3-8b"):
        models.get_spec("qwen3-8")


def test_memory_error_names_the_quantization_that_fits():
    spec = models.REGISTRY["deepseek-r1-distill-qwen-7b"]
    with pytest.raises(MemoryError, match="'nf4' would fit"):
        models.check_memory(spec, "bf16", available_gb=10.0)
    with pytest.raises(MemoryError, match="smaller model"):
        models.check_memory(spec, "nf4", available_gb=2.0)
    models.check_memory(spec, "nf4", available_gb=24.0)


def test_folder_without_config_gets_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        models.get_spec(str(tmp_path))


def test_nf4_loading_on_cpu(tmp_path, qwen3_tokenizer_path):
    pytest.importorskip("bitsandbytes")
    tokenizer = tokenizer_for("qwen3")
    tokenizer.save_pretrained(tmp_path)
    build_tiny("Qwen3ForCausalLM", len(tokenizer), tmp_path)
    model, tokenizer, spec = models.load_model(str(tmp_path), quantization="nf4")
    assert spec.thinking == "qwen3"  # read from the chat template
    assert type(model.model.layers[0].mlp.up_proj).__name__ == "Linear4bit"
    ids = tokenizer(["hello"], return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=3, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert out.shape[1] == ids["input_ids"].shape[1] + 3
    with torch.no_grad():
        reference = models.load_model(str(tmp_path), quantization="fp32")[0](ids["input_ids"]).logits
        quantized = model(ids["input_ids"]).logits
    # 4-bit weights change the logits a little, not wholesale
    assert torch.corrcoef(torch.stack([reference.flatten(), quantized.flatten()]))[0, 1] > 0.9


def test_weights_fingerprint_changes_with_the_weights(tmp_path):
    # retrained local checkpoints keep their name: the fingerprint keeps their old caches from being served
    from lrmsafety.registry import weights_fingerprint

    (tmp_path / "model.safetensors").write_bytes(b"first weights")
    first = weights_fingerprint(tmp_path)
    assert first and weights_fingerprint(tmp_path) == first
    (tmp_path / "model.safetensors").write_bytes(b"retrained weights")
    assert weights_fingerprint(tmp_path) != first
    assert weights_fingerprint(tmp_path / "missing") is None


def test_a_missing_organism_folder_advises_restoring_the_committed_weights(monkeypatch, tmp_path):
    from lrmsafety import catalogue, paths

    monkeypatch.setattr(catalogue, "MODELS_DIR", tmp_path)  # the organisms' folder, emptied
    monkeypatch.setattr(paths, "MODELS_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="git checkout -- .*organism-locked.*retrains them instead"):
        models.load_model("organism-locked")


def test_loading_draws_no_weight_bars_and_leaves_transformers_bars_as_they_were(tmp_path, capfd, qwen3_tokenizer_path):
    from transformers.utils import logging as hf_logging

    tokenizer = tokenizer_for("qwen3")
    tokenizer.save_pretrained(tmp_path)
    build_tiny("Qwen3ForCausalLM", len(tokenizer), tmp_path)
    capfd.readouterr()
    models.load_model(str(tmp_path), quantization="fp32")
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.set_tqdm_hook(None) is None  # no hook left behind


def test_bitsandbytes_imports_without_its_cpu_kernel_notice():
    """peft imports bitsandbytes whenever it is installed; through the registry first, its CPU backend's notice that
    an optional hub kernel is missing stays out of the notebooks."""
    import subprocess
    import sys

    pytest.importorskip("bitsandbytes")
    code = "from lrmsafety.registry import bitsandbytes_error\nassert bitsandbytes_error() is None\nimport peft"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0 and run.stderr == "", run.stderr
