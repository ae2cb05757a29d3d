"""The claims of the README and docs/*.md that a test can check, checked against the code: the
module tables name every module of their folder and nothing else, and every count of assets
matches the definitions. (Commands and measured figures: tests/test_readme.py.)"""

import re
from pathlib import Path

import dagster as dg
import pytest

from fruits_assets import assets as pipeline_assets
from fruits_assets.definitions import defs

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# The pages whose table lists the modules of each folder, one row per folder.
MODULE_TABLES = [REPO / "README.md", REPO / "docs" / "pipeline.md"]
FOLDERS = ["fruits_assets", "spark", "bootstrap/local", "bootstrap/aws", "bootstrap/sample"]
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
NUMBERS = {word: i for i, word in enumerate(WORDS)}
# Backticked words of the module rows that are no module: a job, the catalog, a command.
NOT_MODULES = {"erase_image", "table_maintenance", "lake", "make", "fruits"}
# "five assets", "4 assets", "four pipeline assets": a number, at most one word, "assets".
ASSET_COUNT = re.compile(r"\b(\d+|" + "|".join(NUMBERS) + r") (?:([a-z]+) )?assets\b", re.I)


def modules_of(folder: str) -> set[str]:
    """The folder's modules and packages, as a reader names them (no `.py`, no `__init__`)."""
    root = REPO / folder
    found = {p.stem for p in root.glob("*.py") if p.stem != "__init__"}
    found |= {p.parent.name for p in root.glob("*/__init__.py")}
    return found


def table_row(doc: Path, folder: str) -> str:
    rows = [line for line in doc.read_text().splitlines() if line.startswith(f"| `{folder}/` |")]
    assert len(rows) == 1, f"{doc.name}: one table row for {folder}/"
    return rows[0]


def named_in(row: str) -> set[str]:
    """The module names a row cites in backticks (`name`, `name.py`, `name/`)."""
    cited = re.findall(r"`([a-z_][a-z0-9_]*)(?:\.py|/)?`", row.split("|", 2)[2])
    return set(cited)


@pytest.mark.parametrize("doc", MODULE_TABLES, ids=lambda doc: doc.name)
@pytest.mark.parametrize("folder", FOLDERS)
def test_each_module_table_names_every_module_of_its_folder(doc: Path, folder: str) -> None:
    modules = modules_of(folder)
    named = named_in(table_row(doc, folder))
    assert modules - named == set(), f"{doc.name}: {folder}/ modules missing from its row"
    assert named - modules <= NOT_MODULES, f"{doc.name}: {folder}/ names modules that are gone"


def asset_counts() -> dict[str | None, int]:
    """How many assets each word between a number and "assets" counts (None: no word)."""
    graph = defs.resolve_asset_graph()
    nodes = [graph.get(key) for key in graph.get_all_asset_keys()]
    in_pipeline = [a for a in vars(pipeline_assets).values() if isinstance(a, dg.AssetsDefinition)]
    return {
        None: len(nodes),
        "pipeline": len(in_pipeline),
        "spark": sum(
            "pyspark_step_launcher" in node.assets_def.required_resource_keys for node in nodes
        ),
        "partitioned": sum(node.partitions_def is not None for node in nodes),
    }


def wrong_counts(text: str, counts: dict[str | None, int]) -> list[str]:
    """The counts of assets in `text` that `counts` contradicts, or that count something it
    does not know (no test could check them: a word to add to asset_counts, or to reword)."""
    wrong = []
    for match in ASSET_COUNT.finditer(text):
        number, word = match.group(1).lower(), (match.group(2) or "").lower() or None
        stated = int(number) if number.isdigit() else NUMBERS[number]
        if word not in counts or stated != counts[word]:
            wrong.append(match.group(0))
    return wrong


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: doc.name)
def test_every_count_of_assets_matches_the_definitions(doc: Path) -> None:
    """ "five assets" is all of them, "four pipeline assets" those of fruits_assets/assets.py,
    "four Spark assets" those that take the step launcher (they run as EMR steps on EMR),
    "three partitioned assets" those partitioned by date."""
    counts = asset_counts()
    wrong = wrong_counts(doc.read_text(), counts)
    assert wrong == [], f"{doc.name}: counts of assets that the definitions contradict ({counts})"


def test_a_count_of_assets_is_read_in_digits_or_words_with_one_word_between() -> None:
    counts = {None: 5, "pipeline": 4, "spark": 4, "partitioned": 3}
    text = (
        "five assets, 5 assets, four Spark assets, three partitioned assets; "
        "4 assets, four partitioned assets, six pipeline assets, two Dagster assets; "
        "a 365-date backfill of the ingest assets, one of the assets, 12 assets' checks"
    )
    assert wrong_counts(text, counts) == [
        "4 assets",
        "four partitioned assets",
        "six pipeline assets",
        "two Dagster assets",
        "12 assets",
    ]


def configuration_rows() -> dict[str, str]:
    """docs/configuration.md's field table: each field's 'local default' cell."""
    rows = {}
    for line in (REPO / "docs" / "configuration.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            for name in re.findall(r"`([a-z_0-9]+)`", cells[0]):
                rows[name] = cells[1]
    return rows


def test_the_configuration_page_describes_every_field_with_its_local_default() -> None:
    from fruits_assets.deployments import local
    from fruits_assets.resources import RESOURCE_FIELDS

    rows = configuration_rows()
    fields = {spec.name for spec in RESOURCE_FIELDS} - {"deployment"}
    assert sorted(fields - set(rows)) == [], "fields missing from docs/configuration.md"
    assert sorted(set(rows) - fields) == [], "docs/configuration.md names fields that are gone"
    defaults = type(local.config({})).model_fields
    for name, cell in rows.items():
        shown = re.findall(r"`([^`]*)`", cell)
        if len(shown) == 1 and "," not in cell:  # one literal value: the local default
            default = defaults[name].default
            assert shown[0] == (f"{default:g}" if isinstance(default, float) else str(default))
