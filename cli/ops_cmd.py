"""``ann2snn ops [--markdown]``: the supported ONNX ops (from the registry) and the known unconvertible ones.

The README's table is this command's Markdown output; ``python -m ann2snn.cli.ops_cmd --update-readme``
rewrites it between the ``<!-- ops-table:start -->`` / ``<!-- ops-table:end -->`` markers.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

COMMAND = "ops"
HELP = "list the supported ONNX ops (since opset, IR op, notes) and the known ops that cannot convert, with why"

README_START, README_END = "<!-- ops-table:start -->", "<!-- ops-table:end -->"


def add_arguments(parser) -> None:
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables (for the README)")


def tables() -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    """(supported rows: op, since opset, IR op, note), (unconvertible rows: op, reason), sorted by op."""
    from ann2snn.frontend import registry

    supported = [
        (e.op_type, str(registry.first_opset(e.op_type)), e.ir, e.note) for e in registry.supported_ops()
    ]
    unconvertible = [(u.op_type, u.reason) for u in sorted(registry.UNCONVERTIBLE.values(), key=lambda u: u.op_type)]
    return supported, unconvertible


def _markdown(header, rows) -> list[str]:
    def esc(c: str) -> str:
        return c.replace("|", "\\|")

    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return out


def _text(header, rows) -> list[str]:
    widths = [max(len(c) for c in col) for col in zip(header, *rows)]

    def fmt(cells):
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    return [fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows]


def render(markdown: bool) -> str:
    from ann2snn.frontend import registry

    supported, unconvertible = tables()
    table = _markdown if markdown else _text
    span = f"ONNX opsets {registry.MIN_OPSET} to {registry.MAX_OPSET}, default domain"
    lines = [f"**Supported ONNX ops** ({span}):" if markdown else f"Supported ONNX ops ({span}):", ""]
    lines += table(("ONNX op", "since opset", "IR op", "notes"), supported)
    lines += ["", "**Known ops that cannot become spiking layers:**" if markdown
              else "Known ops that cannot become spiking layers:", ""]
    lines += table(("ONNX op", "reason"), unconvertible)
    lines += ["", "Any other op is reported as unsupported by `ann2snn inspect` and `load_onnx`."]
    return "\n".join(lines) + "\n"


def render_markdown() -> str:
    """The Markdown block the README embeds (identical to ``ann2snn ops --markdown``)."""
    return render(markdown=True)


def update_readme(path: Path) -> bool:
    """Rewrite the table between the README markers; returns True if the file changed."""
    text = path.read_text()
    pattern = re.compile(re.escape(README_START) + r"\n.*?" + re.escape(README_END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"{path}: no {README_START} ... {README_END} markers")
    new = pattern.sub(lambda _: f"{README_START}\n{render_markdown()}{README_END}", text, count=1)
    if new != text:
        path.write_text(new)
    return new != text


def run(args) -> int:
    print(render(args.markdown), end="")
    return 0


if __name__ == "__main__":  # python -m ann2snn.cli.ops_cmd --update-readme [README.md]
    if len(sys.argv) >= 2 and sys.argv[1] == "--update-readme":
        target = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).resolve().parents[1] / "README.md"
        print(f"{target}: {'updated' if update_readme(target) else 'already current'}")
    else:
        print(render_markdown(), end="")
