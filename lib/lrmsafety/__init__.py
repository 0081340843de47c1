"""lrmsafety: the shared library behind the notebooks.

Where each idea lives:
    paths         repository folders and the data directory
    params        every parameter, declared once; profiles (params/<profile>.yaml) that inherit; load()
    artifacts     named artifacts between notebooks (S.rollouts("01", model), S.table, S.judged)
    catalogue     the models of the three papers, one entry each; datasets: the benchmark catalogue
    registry      get_spec(), load_model(), and the data a model family brings (prompt and SFT sources)
    chat          prompt rendering per thinking format; split(): one thinking/answer splitter, the papers' rules
    data          benchmark loaders into one tidy frame
    store         content-addressed caches with manifests
    engine/       decoding (settings, thinking modes), generate (rollouts), scheduler, dynamic, slots, sampling,
                  attention, hooks (add_hooks, head ablation), vllm_backend
    judges/       base (Judge, registry), strings, guards, guard_models, ensembles, labels (each paper's label), stance
    metrics       ASR, ORR, Safe@1/K, ConsSafe@K, intervals
    analysis/     one module per finding. Paper A: activations, probes (+ first_token, nulls), lock_in,
                  deliberation (+ paper_a_measures), interventions (+ intervention_study), finetune. Paper B:
                  cliff_probe, cliff (+ cliff_curve, cliff_controls), heads (+ heads_report), cliff_as_judge/
    ledger        the claims ledger; report: the generated report; plots: one seaborn theme, one colour per
                  model (model_colours) and save_figure()
    pipeline      running notebooks (papermill) and syncing their .ipynb twins; usage: token accounting
    tiny          random-weight stand-ins of the real architectures
    organism/     the organisms as a model family: corpus, tokenizer, training, card (the analysis never imports it)
    numerics      batch-invariant CPU products (set on import: a sample's logits do not depend on its batch)
"""

from . import numerics

numerics.configure()  # before any torch computation: MKL reads it at its first matrix product

__version__ = "0.1.0"
