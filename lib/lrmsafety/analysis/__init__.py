"""The findings, one module each.

Paper A: hidden states at named positions (`activations`); the first-token probe (`probes`), its notebook's tables
and figures (`first_token`) and permutation null (`nulls`); lock-in after cuts of the thinking (`lock_in`);
deliberation, stances and replays (`deliberation`), paper A's measures and the organisms' verdicts on them
(`paper_a_measures`); inference-time interventions (`interventions`) and the study of
notebook 08 (`intervention_study`); LoRA safety fine-tuning (`finetune`, recipes in finetune_recipes.yaml).
Paper B: the refusal probe (`cliff_probe`); the cliff (`cliff`, its curves in `cliff_curve`, the organisms' planted
controls read through the registry in `cliff_controls`); refusal-suppression heads and their ablation (`heads`,
figures and published values in `heads_report`); Cliff-as-a-Judge data selection (`cliff_as_judge/`: pool,
selection, study).
"""
