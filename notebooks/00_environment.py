# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/lrmsafety/lrmsafety/blob/main/notebooks/00_environment.ipynb)
#
# # 00 · Environment
#
# What this run of the pipeline stands on: library versions, the device, where the benchmark prompts are read
# from, and the models of the chosen profile. Every later notebook assumes what this one prints.

# %% Colab: clone and install the repository (does nothing elsewhere)
import sys

if "google.colab" in sys.modules:
    import os
    import subprocess

    REPO, HOME = "https://github.com/lrmsafety/lrmsafety", "/content/lrmsafety"  # REPO: pyproject.toml's (make twins)
    if not os.path.exists(HOME):
        subprocess.run(["git", "clone", "-q", "--depth", "1", REPO, HOME], check=True)
    sys.path.insert(0, f"{HOME}/lib")  # importable at once, without restarting the runtime
    from lrmsafety import colab  # the standard library only: importable before the dependencies are installed
    colab.install(HOME)  # the pinned dependencies except Colab's own torch, numpy and pandas (once per runtime)
    os.chdir(f"{HOME}/notebooks")

# %% tags=["parameters"]
profile = "organism"  # a profile: params/<profile>.yaml, as make all PROFILE
model = None  # a registry name in place of the profile's models, as make all MODEL
backend = None  # "vllm" or "transformers" in place of the profile's backend, as make all BACKEND

# %%
from lrmsafety import artifacts, params

P = params.load(profile, model, backend)  # every value this notebook reads (lib/lrmsafety/params.py)
S = artifacts.Artifacts(profile, model, P.backend)  # its folders (S.cache, S.results), earlier notebooks' artifacts

# %%
import platform

import pandas as pd
import torch
import transformers

from lrmsafety import data, memory, paths, registry

versions = {
    "python": platform.python_version(),
    "torch": torch.__version__,
    "transformers": transformers.__version__,
    "pandas": pd.__version__,
    "device": (torch.cuda.get_device_name(0) if torch.cuda.is_available()
               else f"CPU ({torch.get_num_threads()} threads)"),
}
pd.Series(versions, name="value").to_frame()

# %% [markdown]
# ## Benchmark prompts
# Offline copies are read from a data directory when there is one; otherwise loaders fetch the online sources.

# %%
benchmark_dir = paths.find_benchmark_dir(P.data_dir)
print("benchmark prompts read from:", benchmark_dir or "online sources (no offline copy found)")
data.list_datasets()

# %% [markdown]
# ## Models of this profile

# %%
rows = []
for name in P.models:
    spec = registry.get_spec(name)
    local = spec.local_path()
    rows.append({
        "model": spec.name, "source": spec.hf_id, "architecture": spec.architecture, "thinking": spec.thinking,
        "temperature": spec.sampling.temperature, "top_p": spec.sampling.top_p,
        "available": bool(local and local.exists()) if local else "hub",
        "memory_gb_" + (P.quantization if P.quantization != "auto" else "bf16"):
            round(memory.memory_estimate_gb(spec.params_b, "bf16" if P.quantization == "auto" else P.quantization),
                  2),
    })
pd.DataFrame(rows)
