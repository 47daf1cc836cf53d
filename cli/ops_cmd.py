"""``ann2snn ops [--markdown]``: the supported ONNX ops (from the registry) and the known unconvertible ones."""

from __future__ import annotations

COMMAND = "ops"
HELP = "list the supported ONNX ops (since opset, IR op, notes) and the known ops that cannot convert, with why"


def add_arguments(parser) -> None:
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables (for the README)")


def tables() -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
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
    fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return [fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows]


def run(args) -> int:
    from ann2snn.frontend import registry

    supported, unconvertible = tables()
    render = _markdown if args.markdown else _text
    span = f"ONNX opsets {registry.MIN_OPSET} to {registry.MAX_OPSET}, default domain"
    lines = [f"Supported ONNX ops ({span}):" if not args.markdown else f"**Supported ONNX ops** ({span}):", ""]
    lines += render(("ONNX op", "since opset", "IR op", "notes"), supported)
    lines += ["", "Known ops that cannot become spiking layers:" if not args.markdown
              else "**Known ops that cannot become spiking layers:**", ""]
    lines += render(("ONNX op", "reason"), unconvertible)
    lines += ["", "Any other op is reported as unsupported by `ann2snn inspect` and `load_onnx`."]
    print("\n".join(lines))
    return 0
