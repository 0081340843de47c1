"""A small claims ledger and a result table for the ledger and report tests."""

import copy

import pandas as pd
import yaml

MEASURE = {"id": "A1.harmful", "what": "first-token probe AUROC, harmful", "notebook": "02_first_token_probe",
           "table": "02_first_token_probe.csv", "select": "group == 'harmful'", "value": "auroc",
           "low": "auroc_lo", "high": "auroc_hi", "n": "n",
           "published": {"range": [0.875, 0.948], "per_model": {"qwen3-8b": 0.948}, "source": "Paper A, Table 1",
                         "confidence": "secondary"},
           "tolerance": 0.05, "targets": {"organism-locked": {"min": 0.9}}, "headline": ["organism", "paper"]}


def ledger_dict(measure=MEASURE):
    claims = [{"id": "A1", "paper": "A", "checklist": 1, "claim": "The first token predicts refusal.",
               "measures": [copy.deepcopy(measure)]}]
    claims += [{"id": f"X{i}", "paper": "C", "checklist": i, "claim": f"claim {i}", "not_measured_because": "later"}
               for i in range(2, 15)]
    return {"papers": {"A": 'Ri et al., "Thinking"', "B": 'Yin et al., "Cliff"', "C": 'Jiang et al., "SafeChain"'},
            "organisms": {"organism-locked": "locks in early"}, "claims": claims}


def write(tmp_path, data):
    path = tmp_path / "claims.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def probe_table(results, model, auroc, group="harmful"):
    results.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"model": model, "feature": "first thinking token", "group": [group, "benign"],
                  "auroc": [auroc, 0.5], "auroc_lo": [auroc - 0.02, 0.4], "auroc_hi": [auroc + 0.02, 0.6],
                  "n": [120, 80]}).to_csv(results / "02_first_token_probe.csv", index=False)
