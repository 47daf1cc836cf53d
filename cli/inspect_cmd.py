"""``ann2snn inspect MODEL.onnx [--json]``: how each ONNX node imports, and whether the model converts."""

from __future__ import annotations

import json

COMMAND = "inspect"
HELP = ("show, per ONNX node, the IR op it becomes, its output shape, parameters, MACs and support status; "
        "exits 0 if the model is convertible, 4 (with the full list of unsupported nodes) if not")


def add_arguments(parser) -> None:
    parser.add_argument("model", help="path of the .onnx file (nothing in it is executed)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def _shape(s) -> str:
    return "-" if s is None else "[" + ", ".join(str(d) for d in s) + "]"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "~"


def format_report(report) -> str:
    lines = [
        f"model:    {report.path}",
        f"producer: {report.producer or '?'} (opset {report.opset})",
    ]
    lines += [f"input:    {n} {_shape(s)}" for n, s in report.inputs]
    lines += [f"output:   {n} {_shape(s)}" for n, s in report.outputs]
    header = ("#", "ONNX op", "name", "IR", "output shape", "params", "MACs", "status")
    rows = [
        (str(r.index), r.op_type if not r.domain else f"{r.domain}:{r.op_type}", _clip(r.name, 32),
         _clip(r.ir_label, 28), _shape(r.output_shape), f"{r.params:,}", f"{r.macs:,}", r.status)
        for r in report.rows
    ]
    widths = [max(len(c) for c in col) for col in zip(header, *rows)]
    right = {0, 5, 6}

    def fmt(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    lines += ["", fmt(header), fmt(["-" * w for w in widths])]
    lines += [fmt(r).rstrip() for r in rows]
    ir_nodes = f" -> {len(report.graph.nodes)} IR nodes" if report.graph is not None else ""
    lines += ["", f"totals: {len(report.rows)} ONNX nodes{ir_nodes}, {report.total_params:,} parameters, "
                  f"{report.total_macs:,} MACs per sample"]
    if report.convertible:
        lines.append("convertible: yes")
    else:
        lines.append(f"convertible: NO ({len(report.problems)} unsupported node(s), listed below)")
    return "\n".join(lines)


def run(args) -> int:
    from ann2snn.frontend.importer import inspect_onnx

    report = inspect_onnx(args.model)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(format_report(report))
    if not report.convertible:
        raise report.error()  # main prints the full list on stderr and exits with its code
    return 0
