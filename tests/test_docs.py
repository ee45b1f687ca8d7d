"""Every default a documentation page states is the default in the code.

The convention, for anyone writing a page:

* An RST comment ``.. defaults: Name, Other`` says whose parameters the text
  after it describes (names exported by ``sklearn_layers``, dotted paths such
  as ``sklearn_layers.utils.toy.make_mlp``, or ``cli:demo`` for the options of
  ``python -m sklearn_layers demo``), until the next such comment.
* A default is stated in one of these forms (``name`` is a parameter of at
  least one of those objects; every one that has it must agree, or the value
  lists one default per such object, in the comment's order, separated by
  ``"; "``):

  - ``name`` (default VALUE ...)        ``name`` (default: VALUE)
  - ``name``, default VALUE ...         ``name``: ``VALUE`` (default ...)
  - ``name=VALUE`` (the default)         (``name=VALUE``, default)
  - ``name=VALUE`` by default            (default ``name=VALUE``)
  - ``--option VALUE`` (the default)     (for ``cli:`` subjects)
  - a ``list-table`` whose header has a "parameter" and a "default" column.

  VALUE is a Python literal (``"auto"``, 0.5, ``None``, ``True``), a size
  such as 256 MiB, a role such as :func:`default_probe` (the signature's
  default is ``None`` and the docstring names that function), or words (the
  signature's default is ``None``, and the words say what ``None`` means).
* Any other sentence that puts the word "default" next to a ``literal``
  fails this test, so a stated default cannot escape the check. "The default
  probe" and "the default backend" are names of things, not parameter
  defaults.
"""

import ast
import functools
import importlib
import inspect
import re
from pathlib import Path

import pytest

import sklearn_layers

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(
    p
    for p in DOCS.rglob("*.rst")
    if not {"generated", "auto_examples", "_build"} & set(p.relative_to(DOCS).parts)
)
NOT_PARAMETERS = re.compile(r"default (probe|backend)", re.IGNORECASE)
UNITS = {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30}

LITERAL = r"``[^`]+``"
ROLE = r":\w+:`~?[\w.]+`"
BARE = r"-?\d[\w.+-]*(?:\s(?:KiB|MiB|GiB))?|True|False|None"
VALUE = rf"(?P<value>{LITERAL}|{ROLE}|{BARE}|[^;,)]+)"
NAME = r"``(?P<name>[A-Za-z_]\w*)``"
FORMS = [
    rf"{NAME} \(default:? {VALUE}",
    rf"{NAME}, default:? {VALUE}",
    rf"{NAME}: (?P<value>{LITERAL}) \(default",
    r"``(?P<name>[A-Za-z_]\w*)=(?P<value>[^`]+)``,? \(?(?:the )?default",
    r"``(?P<name>[A-Za-z_]\w*)=(?P<value>[^`]+)`` by default",
    r"\(default ``(?P<name>[A-Za-z_]\w*)=(?P<value>[^`]+)``\)",
    r"``--(?P<name>[a-z][\w-]*) (?P<value>[^`]+)``,? \(?(?:the )?default",
]


class Role(str):
    """A value given as a Sphinx role: a function the ``None`` default uses."""


class Words(str):
    """A value given in words: what the ``None`` default means."""


def parse_value(text):
    text = text.strip()
    if text.startswith("``") and text.endswith("``"):
        text = text[2:-2]
    role = re.fullmatch(r":\w+:`~?([\w.]+)`", text)
    if role:
        return Role(role.group(1).rsplit(".", 1)[-1])
    size = re.fullmatch(r"(\d+) (KiB|MiB|GiB)", text)
    if size:
        return int(size.group(1)) * UNITS[size.group(2)]
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        first = re.match(rf"(?:{BARE})(?=\s|$)", text)
        if first and first.group(0) != text:
            return parse_value(first.group(0))
        return Words(text)


@functools.cache
def defaults_of(subject):
    """{parameter: default} of a callable, or of a command's options."""
    if subject.startswith("cli:"):
        from sklearn_layers.demo._cli import _parser

        commands = next(
            a for a in _parser()._actions if a.__class__.__name__ == "_SubParsersAction"
        )
        command = commands.choices[subject[4:]]
        return {a.dest: a.default for a in command._actions if a.dest != "help"}
    parameters = inspect.signature(resolve(subject)).parameters
    return {name: p.default for name, p in parameters.items()}


@functools.cache
def resolve(name):
    """An exported name (``LayerSweepDisplay.plot`` reaches a method) or a dotted path."""
    parts = name.split(".")
    if hasattr(sklearn_layers, parts[0]):
        obj, rest = getattr(sklearn_layers, parts[0]), parts[1:]
    else:
        for cut in range(len(parts) - 1, 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            rest = parts[cut:]
            break
    for attribute in rest:
        obj = getattr(obj, attribute)
    return obj


def paragraphs(path):
    """(first line, text, subjects) of each paragraph outside code blocks."""
    subjects, block, start, in_code, code_indent = [], [], 0, False, 0
    out = []

    def flush():
        if block:
            out.append((start, " ".join(line.strip() for line in block), subjects))
        block.clear()

    for number, line in enumerate(path.read_text().splitlines(), 1):
        indent = len(line) - len(line.lstrip())
        if in_code:
            if line.strip() and indent <= code_indent:
                in_code = False
            else:
                continue
        comment = re.match(r"\s*\.\. defaults: (.+)$", line)
        if comment:
            flush()
            subjects = [s.strip() for s in comment.group(1).split(",")]
            continue
        if re.match(r"\s*\.\. (code-block|code|literalinclude|math)::", line) or (
            line.rstrip().endswith("::") and not line.lstrip().startswith("..")
        ):
            flush()
            in_code, code_indent = True, indent
            continue
        if not line.strip():
            flush()
            continue
        if not block:
            start = number
        block.append(line)
    flush()
    return out


def table_statements(path):
    """(line, name, value text, subjects) of parameter/default list-tables."""
    found, subjects = [], []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        comment = re.match(r"\s*\.\. defaults: (.+)$", lines[i])
        if comment:
            subjects = [s.strip() for s in comment.group(1).split(",")]
        if ".. list-table::" not in lines[i]:
            i += 1
            continue
        rows, i = [], i + 1
        while i < len(lines) and (not lines[i].strip() or lines[i].startswith(" ")):
            cell = re.match(r"\s*(\*)? - (.*)$", lines[i])
            if cell:
                if cell.group(1):
                    rows.append([(i + 1, cell.group(2))])
                elif rows:
                    rows[-1].append((i + 1, cell.group(2)))
            elif rows and lines[i].strip() and not lines[i].strip().startswith(":"):
                number, text = rows[-1][-1]
                rows[-1][-1] = (number, f"{text} {lines[i].strip()}")
            i += 1
        if not rows:
            continue
        header = [text.lower() for _, text in rows[0]]
        if not ({"parameter", "default"} <= set(header)):
            continue
        name_col, value_col = header.index("parameter"), header.index("default")
        for row in rows[1:]:
            names = re.findall(r"``(\w+)``", row[name_col][1])
            values = [v.strip() for v in row[value_col][1].split(",")]
            assert len(names) == len(values), (path.name, row)
            for name, value in zip(names, values):
                found.append((row[name_col][0], name, value, subjects))
    return found


def prose_statements(path):
    """(line, name, value text, subjects) of the statements in running text."""
    found, unrecognised = [], []
    for number, text, subjects in paragraphs(path):
        covered = []
        for form in FORMS:
            for match in re.finditer(form, text):
                found.append((number, match["name"], match["value"], subjects))
                covered.append(match.span())
        for word in re.finditer(r"\bdefault\b", text, re.IGNORECASE):
            if NOT_PARAMETERS.match(text, word.start()):
                continue
            if any(a <= word.start() < b for a, b in covered):
                continue
            if re.match(r"- default( -| \*|$)", text[word.start() - 2 : word.end() + 2]):
                continue  # the header of a parameter table
            window = text[max(0, word.start() - 40) : word.end() + 40]
            if "``" in window:
                unrecognised.append((number, window))
    return found, unrecognised


def means(subject, name, function):
    """Whether the docstring says ``name=None`` means what ``function()`` is."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    doc = inspect.getdoc(subject) or ""
    entry = re.search(rf"^{name} :.*?(?=^\w+ :|\Z)", doc, re.M | re.S)
    if entry is None:
        return False
    if function in entry.group(0):
        return True
    said = re.search(r"``None`` means\s+``(.+?)``", entry.group(0), re.S)
    namespace = {
        "make_pipeline": make_pipeline,
        "StandardScaler": StandardScaler,
        "LogisticRegression": LogisticRegression,
    }
    return bool(said) and repr(eval(said.group(1), namespace)) == repr(
        resolve(function)()
    )


def shown(path):
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


def check(path, line, name, value_text, subjects):
    where = f"{shown(path)}:{line}"
    if not subjects:
        return [f"{where}: ``{name}`` has a stated default but no `.. defaults:` "
                "comment says whose parameter it is"]
    name = name.replace("-", "_")
    owners = []
    for subject in subjects:
        defaults = defaults_of(subject)
        if name in defaults:
            owners.append((subject, defaults[name]))
    if not owners:
        return [f"{where}: ``{name}`` is not a parameter of {', '.join(subjects)}"]
    # "A; B": one default per subject that has the parameter, in their order
    texts = value_text.split("; ")
    if len(texts) != len(owners):
        texts = [value_text] * len(owners)
    problems = []
    for (subject, default), text in zip(owners, texts):
        value = parse_value(text)
        if isinstance(value, Role):
            ok = default is None and means(resolve(subject), name, value)
        elif isinstance(value, Words):
            ok = default is None or (subject.startswith("cli:") and value == default)
        else:
            ok = type(value) is type(default) or (
                isinstance(value, (int, float))
                and isinstance(default, (int, float))
                and not isinstance(value, bool)
                and not isinstance(default, bool)
            )
            ok = ok and value == default
        if not ok:
            problems.append(
                f"{where}: the page states ``{name}`` defaults to {value_text!r}, "
                f"but {subject}'s default is {default!r}"
            )
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_stated_defaults_match_the_signatures(page):
    prose, unrecognised = prose_statements(page)
    problems = []
    for line, name, value, subjects in table_statements(page) + prose:
        problems += check(page, line, name, value, subjects)
    for line, window in unrecognised:
        problems.append(
            f"{shown(page)}:{line}: a default stated in a form this test "
            f"cannot check (see tests/test_docs.py): ...{window}..."
        )
    assert not problems, "\n".join(problems)


def test_the_user_guide_states_defaults_the_test_checks():
    # the convention is in use: a page whose statements all went unparsed
    # would pass vacuously
    counted = {
        page.name: len(table_statements(page)) + len(prose_statements(page)[0])
        for page in PAGES
        if "user_guide" in page.parts
    }
    assert counted["grownet.rst"] >= 15 and counted["heads.rst"] >= 9, counted
    assert sum(counted.values()) >= 35, counted


def test_a_wrong_default_is_caught(tmp_path):
    page = tmp_path / "page.rst"
    page.write_text(
        ".. defaults: PrototypeClassifier\n\n"
        "``temperature`` (default 2.0) and ``metric``: ``\"cosine\"`` (default)\n\n"
        ".. list-table::\n   :header-rows: 1\n\n"
        "   * - parameter\n     - default\n"
        "   * - ``shrinkage``, ``calibration_weight``\n     - ``None``, 0.25\n\n"
        "the default value is ``0.5`` for this\n"
    )
    prose, unrecognised = prose_statements(page)
    problems = []
    for line, name, value, subjects in table_statements(page) + prose:
        problems += check(page, line, name, value, subjects)
    text = "\n".join(problems)
    assert "``temperature`` defaults to '2.0'" in text
    assert "``calibration_weight`` defaults to '0.25'" in text
    assert "metric" not in text and "shrinkage" not in text
    assert len(unrecognised) == 1


def test_install_page_quotes_the_makefile_torch_pin():
    pin = re.search(r"^TORCH_SPEC := (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert pin, "the Makefile no longer pins torch with TORCH_SPEC :="
    install = (DOCS / "install.rst").read_text()
    assert f"``TORCH_SPEC := {pin.group(1)}``" in install


def _make_dry_run(*args):
    import shutil
    import subprocess

    if shutil.which("make") is None:
        pytest.fail("make is not installed: the Makefile cannot be checked")
    return subprocess.run(["make", "-n", "-B", "venv", *args], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout


def test_torch_index_variable_installs_torch_from_the_cpu_index():
    cpu = re.search(r"^TORCH_CPU_INDEX := (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert cpu, "the Makefile no longer names the CPU-only index in TORCH_CPU_INDEX :="
    torch_lines = [line for line in _make_dry_run().splitlines() if "torch==" in line]
    assert torch_lines and "--index-url" not in torch_lines[0]  # default unchanged
    torch_lines = [line for line in _make_dry_run("TORCH_INDEX=cpu").splitlines()
                   if "torch==" in line]
    assert f"--index-url {cpu.group(1)}" in torch_lines[0]
    install = (DOCS / "install.rst").read_text()
    assert "TORCH_INDEX=cpu" in install and cpu.group(1) in install
