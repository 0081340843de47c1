"""What each notebook generates on a profile (lrmsafety.workload): the counts behind every notebook's cost line and a
profile's whole estimate, and the README's paper-lite figures."""

import re

import pytest

from lrmsafety import params, paths, rates, workload
from lrmsafety.analysis import heads
from lrmsafety.paths import REPO_ROOT


def _paper(**update):
    return params.load("paper").model_copy(update=update)


def test_each_notebooks_work_counts_its_rollouts_and_budgets():
    P = _paper(max_thinking_tokens=100, max_answer_tokens=10, samples_per_prompt=5, traces_per_prompt=4,
               baseline_rollouts=8, cut_percents=[20, 60], answers_per_prefix=3, cut_answer_tokens=7, replays=6)
    assert workload.rollouts_01(P, 30)[0].parts == ((150, 110),)
    # 03: 4 think + 4 no-think traces and B = 0's 8 rollouts per prompt; 2 prompts x 4 traces x 2 cuts x 3 answers
    assert workload.lock_in_03(P, 2)[0].parts == ((2 * 16, 110), (2 * 4 * 2 * 3, 7))
    assert workload.lock_in_03(P.model_copy(update={"baseline_rollouts": 4}), 2)[0].parts[0] == (2 * 8, 110)
    # 04: 2 x K answers per replayed transition, and the traces of prompts 03 did not study
    assert workload.deliberation_04(P, 10, n_new_prompts=3)[0].parts == ((12, 110), (2 * 10 * 6, 7))
    assert workload.deliberation_04(P, None)[0].parts == ((0, 110),)  # no cap: not known before the stances
    assert workload.cliff_05(P, 30, cached=True)[0].tokens == 0
    assert workload.cliff_05(P, 30, cached=False)[0].parts == ((150, 110),)


def test_06_prices_batch_rescaling_apart_and_07_reads_the_default_from_01():
    P = _paper(head_shares=[0.03], rescale_rules=[None, "batch"], random_draws=2, ablation_max_new_tokens=50)
    conditions = heads.ablation_conditions(P.head_shares, P.rescale_rules, P.random_draws)  # none + 2 x (top + 2)
    slot, batch = workload.ablation_06(P, 20, conditions)
    assert (slot.parts, slot.batch_hooks, batch.parts, batch.batch_hooks) == (((4 * 20, 50),), False,
                                                                             ((3 * 20, 50),), True)
    P = _paper(max_thinking_tokens=100, max_answer_tokens=10, samples_per_prompt=2)
    P = P.model_copy(update={"budget_thinking_tokens": 100, "budget_answer_tokens": 10})
    # the default is 01's rollouts; ZeroThink and LessThink answer only; MoreThink thinks to its budget
    assert workload.budgets_07(P, 5)[0].parts == ((0, 110), (20, 10), (10, 110))
    longer = P.model_copy(update={"budget_thinking_tokens": 300})
    assert workload.budgets_07(longer, 5)[0].parts == ((10, 310), (20, 10), (10, 310))


def test_09s_work_is_its_cost_notes():
    P = _paper(cliff_pool_size=100, cliff_full_epochs=2)
    work, = workload.cliff_as_judge_09(P, 3, 10)
    assert work.parts == ((100, P.max_thinking_tokens + P.max_answer_tokens),
                          ((3 + 1 + 1) * 10, P.max_thinking_tokens + P.max_answer_tokens))
    assert workload.cliff_as_judge_09(P, 3, 10, pool=False)[0].parts[0][0] == 0


def test_a_notebook_that_generates_prints_its_work_from_here():
    """The cost line of every notebook that generates comes from lrmsafety.workload (09 through its cost note), so
    that a profile's estimate adds up the lines the notebooks print."""
    functions = {"01_rollouts": "rollouts_01", "03_lock_in": "lock_in_03", "04_deliberation": "deliberation_04",
                 "05_refusal_cliff": "cliff_05", "06_refusal_heads": "ablation_06", "07_thinking_budget": "budgets_07",
                 "08_interventions": "interventions_08"}
    for notebook, function in functions.items():
        source = (REPO_ROOT / "notebooks" / f"{notebook}.py").read_text()
        assert f"workload.line(P, workload.{function}(" in source, notebook
        assert "rates.cost(" not in source, notebook


@pytest.fixture(scope="module")
def paper_lite():
    if paths.find_benchmark_dir() is None:
        pytest.skip("the profile's prompt counts read the offline benchmark copies (../shared/data or data/raw)")
    P = params.load("paper-lite")
    return P, workload.table(P)


def test_a_profiles_estimate_adds_up_its_notebooks(paper_lite):
    P, table = paper_lite
    rows, total = table.iloc[:-1], table.iloc[-1]
    generating = {"01_rollouts", "03_lock_in", "05_refusal_cliff", "06_refusal_heads", "07_thinking_budget"}
    assert set(rows["notebook"]) == generating and generating <= set(P.notebooks)
    assert total["notebook"] == "total" and total["tokens_at_most"] == rows["tokens_at_most"].sum()
    first = rows.iloc[0]  # 01: the profile's prompts x K samples at the full budget, at the 7B's measured rate
    n_prompts = int(first["work"].split()[0])
    budget = P.max_thinking_tokens + P.max_answer_tokens
    assert first["tokens_at_most"] == n_prompts * P.samples_per_prompt * budget
    speed = rates.profile_rate(P, P.models[0])[0].tokens_per_s
    assert first["hours_at_most"] == pytest.approx(first["tokens_at_most"] / speed / 3600)
    assert (rows["tokens_realistic"] < rows["tokens_at_most"]).all()


def test_readme_paper_lite_figures_follow_the_estimate(paper_lite):
    """The README gives paper-lite's generation as 'at most X M tokens (Y h)' and 'about Z M ... (W h)': the
    estimate's total, at most and at realistic lengths."""
    _, table = paper_lite
    total = table.iloc[-1]
    text = " ".join((REPO_ROOT / "README.md").read_text().split())
    found = re.search(r"paper-lite's generation, every notebook: at most ([\d.]+) M tokens \(([\d.]+) h\), about "
                      r"([\d.]+) M at realistic lengths \(([\d.]+) h", text)
    assert found, "README: paper-lite's generation sentence is missing"
    tokens, hours, typical, typical_hours = map(float, found.groups())
    assert tokens == round(total["tokens_at_most"] / 1e6, 1) and hours == round(total["hours_at_most"], 1)
    assert typical == round(total["tokens_realistic"] / 1e6, 1)
    assert typical_hours == round(total["hours_realistic"], 2)
    t4 = workload.table(params.load("paper-lite-t4")).iloc[-1]  # a T4: the H200's rates scaled by the bandwidths
    found = re.search(r"workload paper-lite-t4`: at most ([\d.]+) h, about ([\d.]+) h at realistic lengths", text)
    assert found and tuple(map(float, found.groups())) == (round(t4["hours_at_most"], 1),
                                                            round(t4["hours_realistic"], 1))


def test_readme_paper_lite_prompt_counts_are_its_prompt_tables(paper_lite):
    from lrmsafety import data

    P, _ = paper_lite
    labels = data.profile_prompts(P)["label"].value_counts()
    text = " ".join((REPO_ROOT / "README.md").read_text().split())
    found = re.search(r"on (\d+) prompts of each of StrongREJECT, WildJailbreak and XSTest, (\d+) harmful and (\d+) "
                      r"benign", text)
    assert found and tuple(map(int, found.groups())) == (P.n_prompts, labels["harmful"], labels["benign"])


def test_the_command_line_prints_the_profiles_table(paper_lite, capsys):
    workload.main(["paper-lite"])
    out = capsys.readouterr().out
    assert out.startswith("paper-lite, deepseek-r1-distill-qwen-7b, per model;")
    assert "| total | generation only |" in out


def test_readme_notebook_column_is_the_paper_profiles_estimate(paper_lite):
    """The README's notebook table gives each notebook's generation on the paper profile (at most N M tokens, H h):
    the counts of lrmsafety.workload at the measured rate; 04's at the 300 transitions it names; and the total."""
    P = params.load("paper")
    table = workload.table(P)
    per_notebook = table.iloc[:-1].groupby("notebook")[["tokens_at_most", "hours_at_most"]].sum()
    replays = rates.priced(P, workload.deliberation_04(P, 300)[0].parts)
    per_notebook.loc["04_deliberation"] = (replays.tokens, replays.hours)
    text = (REPO_ROOT / "README.md").read_text()
    cells = dict(re.findall(r"^\| `(\d\d_\w+)` \|[^|\n]*\| ([^\n]*) \|$", text, re.M))
    for notebook, row in per_notebook.iterrows():
        found = re.search(r"(\d+) M tokens[^:]*?(?:: about |, ≤ |, )([\d.]+) h", cells[notebook])
        assert found, (notebook, cells[notebook])
        assert int(found.group(1)) == round(row["tokens_at_most"] / 1e6), notebook
        assert float(found.group(2)) == round(row["hours_at_most"], 1), notebook
    total = table.iloc[-1]
    prose = " ".join(text.split())
    found = re.search(r"the paper profile generates at most (\d+) M tokens in (\d+) GPU hours .*? about (\d+) M tokens "
                      r"and ([\d.]+) h at realistic lengths", prose)
    assert found and tuple(map(float, found.groups())) == (round(total["tokens_at_most"] / 1e6),
                                                            round(total["hours_at_most"]),
                                                            round(total["tokens_realistic"] / 1e6),
                                                            round(total["hours_realistic"], 1))


def test_a_profile_of_several_models_totals_each_at_its_own_rate():
    P = params.load("smoke")  # the organisms' own prompts: no benchmark copies needed
    text = workload.markdown(P)
    for name in P.models:
        total = workload.table(P, name).iloc[-1]
        assert f"- {name}: at most {total['hours_at_most']:.2f} GPU hours" in text
    assert text.count("\n- ") == len(P.models)
