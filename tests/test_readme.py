"""The README's supported-op table is the one the registry generates (`ann2snn ops --markdown`)."""

import re
from pathlib import Path

from ann2snn.cli.ops_cmd import render_markdown

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_ops_table_is_generated_from_the_registry():
    text = README.read_text()
    m = re.search(r"<!-- ops-table:start -->\n(.*?)<!-- ops-table:end -->", text, re.S)
    assert m, "README lacks the ops-table markers"
    assert m.group(1).strip() == render_markdown().strip(), (
        "README op table is stale: run `python -m ann2snn.cli.ops_cmd --update-readme` "
        "or paste `ann2snn ops --markdown` between the markers"
    )
