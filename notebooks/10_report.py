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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/lrmsafety/lrmsafety/blob/main/notebooks/10_report.ipynb)
#
# # 10 · The reproduction report: every claim, published vs ours
#
# The claims ledger, `paper/claims.yaml`, holds one entry per item of the reproduction checklist
# (methods.md) and the table rows behind it: the published value with its source and how sure it is
# ([code] or [secondary source]), the tolerance under which we call it reproduced, the organisms' planted
# targets, and which notebook, result table and row measures it. This notebook fills the ledger from
# `data/results/<profile>/`, draws the headline numbers published vs ours, renders the executed notebooks, and
# writes `paper/<profile>/index.html` (self-contained) with its Markdown source `index.md`.
#
# **Verdicts.** Every verdict follows the 95% interval, not the point estimate: a target is met only when the whole
# interval lies inside it, missed when the interval lies outside, and *inconclusive* when it crosses a bound (a
# narrower interval would decide). On the organism profile the models are controls, and the rows are of two kinds,
# counted apart: the *card* (the organism behaves *as built*: its refusal rates, what its thinking concludes) and the
# *methods* (a paper's method *recovered* what was planted, judged against a baseline where one exists: the cliff
# against benign traces and against organisms without one). The papers' values are shown for reference. On the
# paper profile each model is compared with its published value (or with the published range when the paper did
# not study it), widened by the ledger's tolerance. A claim whose table is missing is *not measured*, with
# the reason; it never disappears.

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
from lrmsafety import ledger as claims
from lrmsafety import paths, plots, report, seeds

plots.set_theme()
results = S.results
out_dir = paths.REPO_ROOT / "paper" / S.run
control = profile in claims.CONTROL_PROFILES
ledger = claims.load_ledger()
print(f"{len(ledger.claims)} claims, {sum(len(c.measures) for c in ledger.claims)} measures; "
      f"result tables in {results.relative_to(paths.REPO_ROOT)}: "
      f"{sorted(p.name for p in results.glob('*.csv')) if results.exists() else 'none'}")

# %% [markdown]
# ## The ledger, filled from the result tables

# %%
# On the full profiles a measure that does not fit its table is a ledger error (it stops here, naming the fix);
# the tiny smoke tables may lack a column (no oscillation at all), which is then "not measured".
filled = claims.fill(ledger, results, profile, P.models, strict=profile in ("organism", "paper"))
# on the organisms: on how many training seeds each row's target holds, where `make seeds` wrote the seed table
filled["seeds"] = seeds.holds_on(filled, seeds.committed_table(S.run),
                                 seeds.committed_table(S.run, name=seeds.POOLED_TABLE))
filled.to_csv(results / "10_claims.csv", index=False)  # the filled ledger, one row per claim × measure × model
print("methods:", claims.verdict_counts(filled, "method"))
if control:
    print("the organisms as built (card):", claims.verdict_counts(filled, "card"))
view = filled[["claim_id", "measure_id", "kind", "model", "published", "target", "ours", "low", "high", "n", "verdict"]]
view.round(3)

# %% [markdown]
# Why each row that is not measured is not: a missing table names the notebook that writes it.

# %%
missing = filled[filled["verdict"] == "not measured"]
missing[["measure_id", "model", "reason"]].drop_duplicates("reason").reset_index(drop=True)

# %% [markdown]
# ## The headline numbers of A, B and C, published vs ours
# Grey: the published value (a diamond) or range (a bar; for a direction, everything past the bound). Dots: ours,
# with the 95% interval. On the organisms, the light bars are the planted targets the verdicts use.

# %%
fig = report.summary_figure(filled, ledger, P.models, control)
summary_png = plots.save_figure(fig, "10_summary", S.run)

# %% [markdown]
# ## The executed notebooks, rendered beside the report
# For reading them locally with their outputs; the report links the committed sources, which every clone has.

# %%
executed = paths.REPO_ROOT / "build" / S.run
pages = report.render_notebooks(executed, out_dir / "notebooks")
print(f"rendered {len(pages)} executed notebooks from {executed.relative_to(paths.REPO_ROOT)}: "
      f"{[p.stem for p in pages]}")

# %% [markdown]
# ## The report

# %%
# the seed tables are read from their committed copies (paper/<profile>/seeds*.csv); their copies here exist only
# where make seeds ran, and the report must not depend on them
unreferenced = sorted({p.name for p in results.glob("*.csv")} - set(filled["table"].dropna())
                      - {"10_claims.csv", seeds.TABLE, seeds.POOLED_TABLE})
print("result tables no claim reads (add them to the ledger if they hold a claim):", unreferenced)
html_path = report.write_report(filled, ledger, profile, out_dir, paths.figures_dir(S.run), summary_png, pages,
                                claims.tables_read(filled, results), unreferenced)
broken = [p for p in report.linked_paths(html_path.read_text()) if not (out_dir / p).exists()]
assert not broken, f"the report links to files that do not exist: {broken}"
print(f"wrote {html_path.relative_to(paths.REPO_ROOT)} and index.md")
