"""Checks of trained organisms on held-out prompts:

    python -m lrmsafety.organism first-word MODEL_DIR [MODEL_DIR ...]     the locked organism's planted decision at
        its first thinking word on every held-out prompt (evaluate.first_word_judgement), per family, jailbreak
        category and wrapper
    python -m lrmsafety.organism independence MODEL_DIR [MODEL_DIR ...]   whether the outcome depends on the prompt:
        many samples per prompt, the spread of the prompts' refusal rates and a chi-square test of one rate
        (evaluate.prompt_independence; the null organism is built without any dependence)
"""

from __future__ import annotations

import argparse

from .evaluate import first_word_judgement, prompt_independence


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("check", choices=["first-word", "independence"])
    ap.add_argument("model_dirs", nargs="+", help="organisms' folders (data/models/organism-locked, ...)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--prompts", type=int, default=30, help="independence: held-out prompts per family")
    ap.add_argument("--samples", type=int, default=40, help="independence: samples per prompt")
    args = ap.parse_args(argv)
    for model_dir in args.model_dirs:
        if args.check == "first-word":
            table = first_word_judgement(model_dir, device=args.device)
        else:
            table = prompt_independence(model_dir, args.prompts, args.samples, device=args.device)
        print(model_dir)
        print(table.round(3).to_string(index=False) if hasattr(table, "to_string") else table, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
