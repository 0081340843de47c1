"""The findings, one module each: hidden states (`activations`), paper A's first-token probes (`probes`, with their
permutation null in `nulls`), paper B's refusal probe (`cliff_probe`) and cliff (`cliff`), refusal heads (`heads`),
paper A's deliberation (`deliberation`) and interventions (`interventions`), LoRA fine-tuning (`finetune`, recipes in
finetune_recipes.yaml), and paper B's Cliff-as-a-Judge (`cliff_as_judge/`)."""
