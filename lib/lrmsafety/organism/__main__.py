"""python -m lrmsafety.organism first-word MODEL_DIR [MODEL_DIR ...]: the locked organism's planted decision at its
first thinking word on every held-out prompt (evaluate.first_word_judgement), per family, jailbreak category and
wrapper."""

from __future__ import annotations

import argparse

from .evaluate import first_word_judgement


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("check", choices=["first-word"])
    ap.add_argument("model_dirs", nargs="+", help="locked organisms' folders (data/models/organism-locked, ...)")
    ap.add_argument("--device", default=None)
    args = ap.parse_args(argv)
    for model_dir in args.model_dirs:
        table = first_word_judgement(model_dir, device=args.device)
        print(model_dir)
        print(table.round(3).to_string(index=False) if hasattr(table, "to_string") else table, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
