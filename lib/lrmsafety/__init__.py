"""lrmsafety: the shared library behind the notebooks.

Where each idea lives:
    paths        repository folders and the data directory
    params       the profile parameters (params/<profile>.yaml), validated
    models       the model registry and load_model()
    chat         prompt rendering per thinking format, split_reasoning()
    data         benchmark loaders into one tidy frame
    hooks        add_hooks(), decoder layers, head ablation at the o_proj input
    activations  hidden states at named positions
    organism     the synthetic corpus, tokenizer and training of the organisms
    plots        one seaborn theme and save_figure()
"""

__version__ = "0.1.0"
