"""The organisms' requests: a topic of a family in a split's phrasings (held-out templates and jailbreak wrappers for
"test"; in training also phrasings composed from parts, and neutral decorations), with what they were made of.

Pure Python and seeded through the caller's ``random.Random``.
"""

from __future__ import annotations

import random

from . import texts as T

TOPICS = {"benign": T.BENIGN_TOPICS, "harmful": T.HARMFUL_TOPICS, "jailbreak": T.HARMFUL_TOPICS,
          "borderline": T.BORDERLINE_TOPICS}


def split_ids(n: int, test_ids: set[int], split: str) -> list[int]:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    return [i for i in range(n) if (i in test_ids) == (split == "test")]


P_DECORATE = 0.4
P_COMPOSED = 0.6  # share of training jailbreaks whose phrasing is composed from a shared frame and a cue phrase
P_COMPOSED_REQUEST = 0.5  # share of training requests (of every family) phrased by composed_request


def composed_request(rng: random.Random, topic: str) -> tuple[int, str]:
    """A training-only phrasing of a request: an opener, the topic, an ending (texts.REQUEST_OPENERS), with its
    template_id (texts.COMPOSED_TEMPLATE_ID + the opener's index)."""
    openers = [(mark, opener) for mark, listed in T.REQUEST_OPENERS.items() for opener in listed]
    index = rng.randrange(len(openers))
    mark, opener = openers[index]
    return T.COMPOSED_TEMPLATE_ID + index, f"{opener} {topic}{rng.choice(T.REQUEST_ENDINGS)}{mark}"


def make_prompt(rng: random.Random, family: str, split: str, decorate: bool = True) -> dict:
    """A request of one family with its template (and wrapper) drawn from the split's phrasings (in training, half
    of them composed), sometimes with a neutral decoration ("Quick question.") before or after it."""
    topic = rng.choice(TOPICS[family])
    if split == "train" and decorate and rng.random() < P_COMPOSED_REQUEST:
        tid, request = composed_request(rng, topic)
    else:
        tid = rng.choice(split_ids(len(T.REQUEST_TEMPLATES), T.TEST_TEMPLATE_IDS, split))
        request = T.REQUEST_TEMPLATES[tid].format(t=topic)
    prompt, category, wid = request, "", -1
    if family == "jailbreak":
        category = rng.choice(T.CATEGORIES)
        if split == "train" and decorate and rng.random() < P_COMPOSED:
            fid, c = rng.randrange(len(T.SHARED_FRAMES)), rng.choice(T.CUE_PHRASES[category])
            wid = T.COMPOSED_WRAPPER_ID + fid
            prompt = T.SHARED_FRAMES[fid].format(r=prompt, c=c, C=c[0].upper() + c[1:])
        else:
            wid = rng.choice(split_ids(len(T.WRAPPERS[category]), T.TEST_WRAPPER_IDS, split))
            prompt = T.WRAPPERS[category][wid].format(r=prompt)
    if decorate and rng.random() < P_DECORATE:
        d = rng.choice(T.DECORATIONS)
        prompt = f"{d} {prompt}" if rng.random() < 0.5 else f"{prompt} {d}"
    return dict(family=family, category=category, topic=topic, template_id=tid, wrapper_id=wid, prompt=prompt)
