"""Every ``.. code-block:: python`` of the user guide runs, page by page.

A page's blocks run in order in one namespace, as a reader would type them,
after the page's setup below: the objects its text assumes (``net``, ``X``,
``y``...) built small, so the whole guide runs in CI in seconds. A line
``expression  # literal`` states a value: the expression must equal it
(``# e.g. ...`` comments are examples, not checked). The few blocks that need
what CI does not have are listed in ``NOT_RUN`` with the reason.
"""

import ast
import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "user_guide"

COMMON = """
import numpy as np
import torch
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn_layers import *
from sklearn_layers.utils.toy import make_resnet18, make_small_cnn, make_staged_cnn

rng = np.random.default_rng(0)

def _images(n, channels=3, side=16, n_classes=2, seed=0):
    generator = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    X = generator.normal(size=(n, channels, side, side)).astype(np.float32)
    X[:, :, : side // 2] += y[:, None, None, None]  # the top half tells the class
    return X, y
"""

IMAGES = """
X, y = _images(40)
X_new = X[:5]
X_train, y_train = X[:30], y[:30]
X_test, y_test = X[30:], y[30:]
X_shift, y_shift = X_test + 0.5, y_test
"""

SETUP = {
    "cache.rst": IMAGES + "net = make_staged_cnn(n_classes=2, width=4)",
    "combining_layers.rst": IMAGES + "net = make_resnet18(n_classes=2, width=4)",
    "layer_selection.rst": IMAGES + """
net = make_staged_cnn(n_classes=2, width=4)
y_continuous = y + 0.1 * rng.normal(size=len(y))
""",
    "layers_and_pooling.rst": """
images, _ = _images(6, channels=1)
from sklearn_layers.models import load_minilm
bert, tokenizer = load_minilm()
""",
    "grownet.rst": """
import pandas as pd
def _frame(n, seed):
    generator = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "size": generator.normal(size=n),
        "colour": pd.Categorical(generator.choice(["red", "green", "blue"], size=n)),
    })
    frame.loc[::7, "size"] = np.nan
    return frame, (frame["colour"] == "red").to_numpy().astype(int)
df_train, y_train = _frame(40, 0)
df_test, _ = _frame(10, 1)
w_train = np.ones(len(df_train))
""",
    "rfrboost.rst": """
net = make_staged_cnn(n_classes=2, width=4)
images, labels = _images(40)
""",
    "deploying.rst": IMAGES + """
import pickle
from sklearn_layers.models import load_minilm
pipe = Pipeline([("features", LayerFeatureTransformer(make_staged_cnn(n_classes=2, width=4))),
                 ("head", default_probe())])
grid = GridSearchCV(pipe, {"features__layers": ["block1", "block2"]}, cv=3)
net, tokenizer = load_minilm()
texts = ["a short text", "and another, longer one"] * 5
""",
    "early_exit.rst": """
from sklearn_layers.datasets import load_election_tweets
from sklearn_layers.models import load_minilm
model, tokenizer = load_minilm()
tweets = load_election_tweets()
X, y = list(tweets.data[:90]), tweets.target[:90]
X_new = X[:5]
X_test, y_test = list(tweets.data[90:130]), tweets.target[90:130]
""",
    "gpu.rst": IMAGES + "net = make_staged_cnn(n_classes=2, width=4)",
    "images.rst": """
from PIL import Image
net = make_staged_cnn(n_classes=2, width=4)
net.feature_info = [{"module": f"block{i}"} for i in range(1, 5)]  # as timm declares
for name, colour in [("cat.jpg", (200, 30, 30)), ("dog.png", (30, 30, 200))]:
    Image.new("RGB", (32, 24), colour).save(name)
paths = ["cat.jpg", "dog.png"]
""",
}

# (page, first line of the block) -> why it does not run in CI, and whether it
# runs here after all
NOT_RUN = {
    ("gpu.rst", 'net = net.to("cuda")'):
        ("needs a CUDA device", lambda: __import__("torch").cuda.is_available()),
    ("gpu.rst", 'extractor = LayerFeatureTransformer(net.to("cuda"), device="cuda")'):
        ("needs a CUDA device", lambda: __import__("torch").cuda.is_available()),
    ("images.rst", "import timm"):
        ("timm is not a dependency, and the block downloads pretrained weights",
         lambda: False),
}

# pages whose blocks load all-MiniLM-L6-v2
SLOW = {"layers_and_pooling.rst", "datasets.rst", "early_exit.rst", "deploying.rst"}


def code_blocks(page):
    """The ``.. code-block:: python`` blocks of a page, dedented, in order."""
    lines = page.read_text().splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        if re.match(r"\s*\.\. code-block:: python\s*$", lines[i]):
            indent = len(lines[i]) - len(lines[i].lstrip())
            i += 1
            body = []
            while i < len(lines) and (
                not lines[i].strip()
                or len(lines[i]) - len(lines[i].lstrip()) > indent
            ):
                body.append(lines[i])
                i += 1
            code = textwrap.dedent("\n".join(body)).strip("\n")
            code = "\n".join(line for line in code.splitlines() if not line.startswith(":"))
            blocks.append(code.strip("\n"))
        else:
            i += 1
    return blocks


def stated_values(code):
    """``(expression, literal)`` for each ``expression  # literal`` line."""
    stated = []
    for line in code.splitlines():
        if "#" not in line or line.startswith((" ", "\t")):
            continue
        expression, _, comment = line.partition("#")
        comment = comment.strip()
        if comment.startswith("e.g."):
            continue
        try:
            ast.parse(expression.strip(), mode="eval")
            value = ast.literal_eval(comment)
        except (SyntaxError, ValueError):
            continue
        stated.append((expression.strip(), value))
    return stated


PAGES = sorted(p.name for p in GUIDE.glob("*.rst") if code_blocks(p))


def test_every_page_with_code_is_collected():
    # a page with blocks but no setup runs on the common setup alone
    assert {"datasets.rst", "images.rst", "layers_and_pooling.rst"} <= set(PAGES)
    assert code_blocks(GUIDE / "layers_and_pooling.rst")[0].startswith(
        "from sklearn_layers import LayerFeatureTransformer")


@pytest.mark.parametrize(
    "page", [pytest.param(p, marks=pytest.mark.slow) if p in SLOW else p for p in PAGES]
)
def test_user_guide_code_runs(page, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)  # files the blocks write stay in tmp_path
    namespace = {"__name__": f"user_guide_{page[:-4]}"}
    exec(compile(COMMON + SETUP.get(page, ""), f"<setup of {page}>", "exec"), namespace)
    ran, reasons = 0, []
    for number, code in enumerate(code_blocks(GUIDE / page), start=1):
        first = code.splitlines()[0]
        if (page, first) in NOT_RUN:
            reason, runs_here = NOT_RUN[page, first]
            if not runs_here():
                reasons.append(reason)
                continue
        try:
            exec(compile(code, f"<{page}, block {number}>", "exec"), namespace)
        except Exception as exc:
            raise AssertionError(
                f"{page}, code block {number} (starting {first!r}) raised "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        for expression, value in stated_values(code):
            got = eval(expression, namespace)
            assert got == value, (
                f"{page}, block {number}: {expression} is {got!r}, the page says {value!r}"
            )
        ran += 1
    if not ran:
        assert reasons, f"no block of {page} ran"
        pytest.skip(f"{page}: its only code {reasons[0]}")


def test_blocks_that_do_not_run_still_exist():
    # an entry for a block that was edited away would excuse nothing
    for page, first in NOT_RUN:
        firsts = [code.splitlines()[0] for code in code_blocks(GUIDE / page)]
        assert first in firsts, (page, first)
