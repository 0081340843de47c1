"""The reproduction report in paper/<profile>/, from the filled claims ledger (lrmsafety.ledger).

``summary_figure()`` draws the headline rows published vs ours; ``write_report()`` writes index.md and a
self-contained index.html (images inlined, each still linked to its file, notebooks linked to their committed
sources); ``render_notebooks()`` renders the executed notebooks to HTML beside it, outputs kept and progress-bar
noise stripped (generated for local reading, not committed: the report never links them).
"""

from __future__ import annotations

import base64
import html
import logging
import math
import os
import re
from pathlib import Path

import pandas as pd

from .ledger import CONTROL_PROFILES, VERDICTS, Ledger, target_of, verdict_counts
from .paths import REPO_ROOT
from .verdicts import fmt

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"

# ---------------------------------------------------------------- the summary figure

def _short_title(paper: str, ledger: Ledger) -> str:
    quoted = re.search(r'"([^"]+)"', ledger.papers[paper])
    return f"{paper} · {quoted.group(1) if quoted else ledger.papers[paper]}"


def summary_figure(filled: pd.DataFrame, ledger: Ledger, models: list[str], control: bool):
    """Published (grey) vs ours (a dot per model, 95% CI) for the headline rows of A, B and C; planted targets
    (light bars) on the organism profile; 'not measured' where a table is missing."""
    import textwrap

    import matplotlib.pyplot as plt
    from matplotlib.legend_handler import HandlerTuple
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from .plots import model_colours

    head = filled[filled["headline"].fillna(False).astype(bool)]
    colors = model_colours(models)
    drawn = set()  # what the panels hold, so that the legend lists only that
    labels = {p: list(dict.fromkeys(head[head["paper"] == p]["label"])) for p in ("A", "B", "C")}
    height = max(2.4, 0.62 * max(len(v) for v in labels.values()) + 1.2)
    fig, axes = plt.subplots(1, 3, figsize=(11.5, height))
    offsets = {m: (i - (len(models) - 1) / 2) * 0.22 for i, m in enumerate(models)}
    for ax, paper in zip(axes, ("A", "B", "C")):
        rows = head[head["paper"] == paper]
        finite = pd.concat([rows[c] for c in ("ours", "low", "high", "published_low", "published_high")])
        finite = pd.to_numeric(finite, errors="coerce")
        finite = finite[finite.abs() < math.inf].dropna()
        xmin = min(0.0, finite.min() - 0.05) if len(finite) else 0.0
        xmax = max(1.0, finite.max() + 0.05) if len(finite) else 1.0
        for y, label in enumerate(labels[paper]):
            measure = rows[rows["label"] == label]
            first = measure.iloc[0]
            lo, hi = first["published_low"], first["published_high"]
            if pd.notna(lo):
                lo, hi = max(float(lo), xmin), min(float(hi), xmax)
                if hi - lo > 1e-9:
                    ax.barh(y, hi - lo, left=lo, height=0.8, color="0.9", zorder=0)
                    drawn.add("range")
                else:
                    ax.plot(lo, y, marker="D", color="0.45", ms=7, zorder=2)
                    drawn.add("value")
            else:  # say so, rather than leave the reader looking for a grey mark
                ax.text(xmax - 0.02 * (xmax - xmin), y - 0.36, "no published value", ha="right", va="center",
                        fontsize=7, color="0.4", style="italic")
            for _, r in measure.iterrows():
                yy = y + offsets[r["model"]]
                if control and r["target"] not in (None, "–") and isinstance(r["target"], str):
                    target = target_of(ledger, r["measure_id"], r["model"])
                    t_lo = xmin if target.min is None else target.min
                    t_hi = xmax if target.max is None else target.max
                    ax.barh(yy, max(t_hi - t_lo, 0.01), left=t_lo, height=0.15, color=colors[r["model"]],
                            alpha=0.35, zorder=1)
                    drawn.add(("target", r["model"]))
                if pd.notna(r["ours"]):
                    # a percentile bootstrap interval can sit beside a skewed point estimate: no negative arms
                    err = ([[max(r["ours"] - r["low"], 0.0)], [max(r["high"] - r["ours"], 0.0)]]
                           if pd.notna(r["low"]) else None)
                    ax.errorbar(r["ours"], yy, xerr=err, fmt="o", color=colors[r["model"]], ms=6, capsize=2,
                                zorder=3)
                else:
                    ax.text(xmin + 0.02 * (xmax - xmin), yy, "not measured", va="center", fontsize=7,
                            color=colors[r["model"]], style="italic", zorder=3)
        ax.set_yticks(range(len(labels[paper])), [textwrap.fill(s, 26) for s in labels[paper]], fontsize=8)
        ax.set_ylim(len(labels[paper]) - 0.5, -0.5)
        ax.set_xlim(xmin, xmax)
        ax.set_title(_short_title(paper, ledger), fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
    handles, names = [], []
    if "range" in drawn:
        handles.append(Patch(color="0.9"))
        names.append("published (range or bound)")
    if "value" in drawn:
        handles.append(Line2D([], [], marker="D", color="0.45", ls=""))
        names.append("published (value)")
    targeted = [m for m in models if ("target", m) in drawn]
    if targeted:  # a light patch in each colour the target bars are drawn in
        handles.append(tuple(Patch(color=colors[m], alpha=0.35) for m in targeted))
        names.append("planted target")
    for m in models:
        handles.append(Line2D([], [], marker="o", color=colors[m], ls=""))
        names.append(m)
    fig.legend(handles, names, loc="lower center", ncol=len(handles), fontsize=8, frameon=False,
               handler_map={tuple: HandlerTuple(ndivide=None, pad=0)})
    fig.suptitle("Published vs ours" + (" (organisms: controls with planted targets)" if control else ""), fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 0.97))
    return fig


# ---------------------------------------------------------------- the report: Markdown source and HTML

def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _ci(row) -> str:
    return f"{fmt(row['low'])}–{fmt(row['high'])}" if pd.notna(row["low"]) else "–"


def _n(row) -> str:
    return f"{int(row['n']):,}" if pd.notna(row.get("n")) else "–"


def markdown_report(filled: pd.DataFrame, ledger: Ledger, profile: str, figure: str | None,
                    figures: dict[str, list[str]], notebooks: list[str], tables_read: dict[str, int],
                    unreferenced: list[str] = ()) -> str:
    """The report as Markdown; figure paths are relative to paper/<profile>/."""
    control = profile in CONTROL_PROFILES
    out = [f"# Reproduction report · profile `{profile}`", ""]
    if control:
        out += ["> **These are controls, not the papers' models.** On this profile every notebook runs on the "
                "repository's own small reasoning models (the organisms), built with a known, planted behaviour. "
                "Two kinds of rows: the **card** checks that an organism behaves as it was built (its refusal "
                "rates, what its thinking concludes: **as built** or **not as built**); a **method** row checks "
                "whether a paper's method **recovered** what was planted (or **differs** from the planted target). "
                "Each verdict follows the 95% interval: met only when the whole interval lies inside the target, "
                "missed when it lies outside, **inconclusive** when it crosses a bound. The papers' published "
                "values are shown beside ours for reference only, never compared. What was planted:", ">"]
        out += [f"> - `{name}`: {text}" for name, text in ledger.organisms.items()]
    else:
        out += ["Each model is compared with the papers' published values by its 95% interval: **reproduced** when "
                "the whole interval lies within the ledger's tolerance of the model's own published value (or of "
                "the published range over the papers' models when this model was not in the paper), **differs** "
                "when it lies wholly outside, **inconclusive** when it crosses that band's edge."]
    counts = " · ".join(f"{n} {v}" for v, n in verdict_counts(filled, "method").items())
    out += ["", ("**The methods:** " if control else "**Verdicts:** ") + counts +
            " (one per claim, measure and model; `paper/claims.yaml` lists them)."]
    card = verdict_counts(filled, "card")
    if card:
        out += ["", "**The organisms as built** (the card's rows, counted apart): "
                + " · ".join(f"{n} {v}" for v, n in card.items()) + "."]
    out += [""]
    if figure:
        out += [f"![Published vs ours: the headline numbers of papers A, B and C]({figure})", ""]
    out += ["## Claims at a glance", "", "| claim | checklist | what the paper claims | verdicts on this profile |",
            "|---|---|---|---|"]
    for claim in ledger.claims:
        rows = filled[filled["claim_id"] == claim.id]
        measured = rows[rows["verdict"] != "not measured"]
        glance = " · ".join(f"{n} {v}" for v, n in verdict_counts(rows).items())
        if measured.empty:
            glance = f"not measured: {rows['reason'].iloc[0]}"
        out.append(f"| [{claim.id}](#{claim.id.lower()}) | {claim.checklist} | {_cell(claim.claim)} "
                   f"| {_cell(glance)} |")
    out.append("")
    # a "holds on seeds" column where the seed table (make seeds; lrmsafety.seeds.holds_on) gave one
    with_seeds = "seeds" in filled and (filled["seeds"].fillna("–") != "–").any()
    if with_seeds:
        out += ["The column *holds on seeds* counts the organisms' training seeds on which a row's target holds "
                "(its interval inside it), from `paper/organism/seeds.csv` (`make seeds`; the summary is "
                "`paper/organism/seeds.md`); the value shown is seed 0's, the committed organisms'. Where the "
                "column says *pooled*, the target is judged on every seed's runs together "
                "(`paper/organism/seeds_pooled.csv`), each seed's own count beside it.", ""]
    shown = set()
    for paper, title in ledger.papers.items():
        out += [f"## {paper} · {title}", ""]
        part = filled[filled["paper"] == paper]
        caveats = []
        for claim in [c for c in ledger.claims if c.paper == paper]:
            rows = part[part["claim_id"] == claim.id]
            out += [f'<a id="{claim.id.lower()}"></a>**{claim.id}** (checklist {claim.checklist}). {claim.claim}', ""]
            out += ["| measure | kind | model | published | source | planted target | ours | 95% CI | n | verdict "
                    + ("| holds on seeds " if with_seeds else "") + "| reason |",
                    "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if with_seeds else "") + "---|"]
            previous = (None, None)
            for _, r in rows.iterrows():
                source = f"{r['source']} [{r['confidence']}]" if isinstance(r["source"], str) else "–"
                published = r["published"] if isinstance(r["published"], str) else "–"
                what = r["what"]
                if r["measure_id"] == previous[0]:  # the measure's cells once, then a line per further model
                    what = source = ""
                    published = "" if published == previous[1] else published
                previous = (r["measure_id"], r["published"] if isinstance(r["published"], str) else "–")
                out.append("| " + " | ".join(_cell(x) for x in (
                    what, r["kind"] if what else "", r["model"], published, source, r["target"] if isinstance(r["target"], str) else "–",
                    fmt(r["ours"]), _ci(r), _n(r), f"**{r['verdict']}**", *([r["seeds"]] if with_seeds else []),
                    r["reason"])) + " |")
            out.append("")
            if claim.caveat:
                caveats.append(f"- {claim.id}: {claim.caveat}")
        paper_figures = [f for nb in dict.fromkeys(part["notebook"].dropna()) for f in figures.get(nb, [])
                         if f not in shown]
        shown.update(paper_figures)
        if paper_figures:
            out += ["**Figures** (from the notebooks that measure these claims)", ""]
            out += [f"![{Path(f).stem}]({f})" for f in paper_figures] + [""]
        if caveats:
            out += ["**Caveats**", ""] + caveats + [""]
    # the sources, which every clone has; the rendered pages are generated, never committed, so only named
    out += ["## Notebooks", "", "The notebooks behind this page as committed, without outputs (each has an \"Open in "
            "Colab\" badge). `make all` executes them and renders each with its outputs to `notebooks/<name>.html` "
            "beside this page (generated, not committed).", ""]
    out += [f"- [{Path(nb).stem}]({nb})" for nb in notebooks] or ["- none executed yet: run `make all` first"]
    out += ["", "## How this page is made", "",
            f"Notebook `10_report` fills `paper/claims.yaml` (published values, sources, tolerances, planted targets "
            f"and the table row that measures each claim) from `data/results/{profile}/`. Nothing on this page is "
            "typed by hand; a claim whose table is missing is listed as not measured, with the reason. Tables read: "
            + (", ".join(f"`{t}` ({n} rows)" for t, n in tables_read.items()) or "none") + ".", ""]
    if unreferenced:
        out += ["Result tables of this profile that no claim reads yet: "
                + ", ".join(f"`{t}`" for t in unreferenced) + ".", ""]
    return "\n".join(out)


CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1180px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}table{border-collapse:collapse;font-size:13px;margin:.4em 0 1.2em}
th,td{border:1px solid #ddd;padding:3px 6px;vertical-align:top}th{background:#f3f3f3}blockquote{background:#fff7e0;
border-left:4px solid #e0a800;margin:1em 0;padding:.5em 1em}img{max-width:100%}code{background:#f3f3f3;padding:0 3px}
td strong{white-space:nowrap}table:has(th:nth-child(11)) td:nth-child(n+4):nth-child(-n+9){white-space:nowrap}
.v-recovered,.v-reproduced,.v-as-built{color:#17692d}.v-differs,.v-not-as-built{color:#b3261e}
.v-inconclusive{color:#9a6700}.v-not-measured,.v-no-verdict{color:#666}"""


def html_report(markdown: str, base: Path, title: str) -> str:
    """Self-contained HTML: images inlined as data URIs (each still linked to its file), styles inline."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)

    def inline(match):
        src, alt = match.group(1), match.group(2)
        data = base64.b64encode((base / src).read_bytes()).decode()
        return f'<a href="{src}"><img src="data:image/png;base64,{data}" alt="{alt}"></a>'

    body = re.sub(r'<img src="([^"]+\.png)" alt="([^"]*)"\s*/?>', inline, body)
    for verdict in VERDICTS:
        body = body.replace(f"<strong>{verdict}</strong>",
                            f'<strong class="v-{verdict.replace(" ", "-")}">{verdict}</strong>')
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body>\n{body}</body></html>\n")


def linked_paths(html_text: str) -> list[str]:
    """Relative paths the HTML links to or loads (not data URIs, anchors or web addresses)."""
    paths = re.findall(r'(?:href|src)="([^"#]+)"', html_text)
    return [p for p in paths if not re.match(r"^(data:|https?:|mailto:)", p)]


# ---------------------------------------------------------------- executed notebooks to HTML

# a text bar's redraw (tqdm draws widgets inside a kernel, text bars elsewhere)
_PROGRESS = re.compile(r"\r|\d+%\|")


def strip_progress(notebook) -> int:
    """Remove progress bars in place: text-bar redraws on stderr (the lines that hold them) and widget views; other
    stderr (a real warning, a traceback) stays. Returns how many outputs went."""
    removed = 0
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for output in cell.get("outputs", []):
            if "application/vnd.jupyter.widget-view+json" in output.get("data", {}):
                removed += 1
                continue
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                lines = [line for line in output.get("text", "").split("\n") if not _PROGRESS.search(line)]
                output["text"] = "\n".join(lines)
                if not output["text"].strip():
                    removed += 1
                    continue
            kept.append(output)
        cell.outputs = kept
    return removed


def render_notebooks(executed_dir: Path, out_dir: Path, skip: tuple[str, ...] = ("10_report",)) -> list[Path]:
    """Render every executed notebook of a profile to HTML in out_dir, outputs kept, progress bars stripped."""
    import nbformat
    from nbconvert import HTMLExporter

    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.rglob("*.html"):  # a notebook that no longer runs leaves no page behind
        stale.unlink()
    exporter = HTMLExporter(template_name="classic")
    exporter.log.setLevel(logging.ERROR)  # its alt-text notices are about our figures' outputs, not actionable
    written = []
    # build/<profile>/NN_x.ipynb, or build/paper/<model>/NN_x.ipynb for `make all MODEL=...`: this run's own only,
    # not those of the runs kept in its subfolders (build/<profile>/<model>/, build/<profile>/vllm/)
    for path in sorted(Path(executed_dir).glob("[0-9][0-9]_*.ipynb")):
        if path.stem in skip or "." in path.stem:  # pipeline leftovers: NN_x.source.ipynb, NN_x.ipynb.partial
            continue
        notebook = nbformat.read(path, as_version=4)
        strip_progress(notebook)
        body, _ = exporter.from_notebook_node(notebook)
        target = out_dir / path.relative_to(executed_dir).with_suffix(".html")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body)
        written.append(target)
    return written


def notebook_figures(figure_folder: Path, notebooks: list[str], relative_to: Path) -> dict[str, list[str]]:
    """The PNG figures each notebook wrote (named after its number), as paths relative to the report."""

    found = {}
    for nb in notebooks:
        pngs = sorted(p for p in Path(figure_folder).glob(f"{nb[:3]}*.png") if not p.stem.startswith("10_"))
        found[nb] = [os.path.relpath(p, relative_to) for p in pngs]
    return found


def write_report(filled: pd.DataFrame, ledger: Ledger, profile: str, out_dir: Path, figure_folder: Path,
                 summary_png: Path | None, notebook_pages: list[Path], tables_read: dict[str, int],
                 unreferenced: list[str] = ()) -> Path:
    """Write out_dir/index.md (the source) and out_dir/index.html (self-contained); returns the HTML path.
    ``notebook_pages``: the rendered notebooks (:func:`render_notebooks`); the report links their sources."""

    out_dir.mkdir(parents=True, exist_ok=True)
    figures = notebook_figures(figure_folder, list(dict.fromkeys(filled["notebook"].dropna())), out_dir)
    summary = os.path.relpath(summary_png, out_dir) if summary_png else None
    # each rendered page links to its notebook's committed .ipynb twin
    pages = [os.path.relpath(NOTEBOOKS_DIR / f"{Path(p).stem}.ipynb", out_dir) for p in notebook_pages]
    markdown = markdown_report(filled, ledger, profile, summary, figures, pages, tables_read, unreferenced)
    (out_dir / "index.md").write_text(markdown)
    target = out_dir / "index.html"
    target.write_text(html_report(markdown, out_dir, f"lrmsafety reproduction report ({profile})"))
    return target
