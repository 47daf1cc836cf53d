"""The ``ann2snn`` command: argparse front end over the public API (no logic the API lacks).

Each sub-command lives in its own module exposing ``COMMAND`` (name), ``HELP``, ``add_arguments(parser)``
and ``run(args) -> int``; add a module to ``_COMMANDS`` to add a sub-command.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import logging
import os
import signal
import sys

from ann2snn.errors import Ann2SnnError, DistributedRunError

_COMMANDS = ("inspect", "ops", "convert", "evaluate", "tune")

EXIT_HELP = """exit codes:
  0  success
  1  other ann2snn error, or a file system error (permissions, missing folder, disk full)
  2  bad command-line usage, or an invalid calibration option (CalibrationConfigError)
  3  invalid or unsafe model file (InvalidModelError)
  4  unsupported ops in the model (UnsupportedModelError)
  5  bad data (DataError)
  6  backend constraint violated (BackendConstraintError)
  7  output exists (use --force)
  8  a distributed run stopped: another rank died or stopped answering (DistributedRunError)
 130 interrupted
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ann2snn",
        description="Convert trained ONNX CNNs into spiking neural networks, simulate them, export to Loihi/NIR.",
        epilog=EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks and debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars (warnings and errors only)")
    parser.add_argument("-v", "--verbose", action="store_true", help="also show the library's INFO log lines")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod_name in _COMMANDS:
        mod = importlib.import_module(f"ann2snn.cli.{mod_name}_cmd")
        p = sub.add_parser(mod.COMMAND, help=mod.HELP, description=mod.HELP,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    # the console shows the command's own output (tables, report, what was written), warnings and errors;
    # the library's INFO lines (auto choices, calibration details) with -v, everything with --debug
    verbose = args.debug or (args.verbose and not args.quiet)
    level = logging.DEBUG if args.debug else (logging.INFO if verbose else logging.WARNING)
    rank = os.environ.get("RANK") if int(os.environ.get("WORLD_SIZE", "1")) > 1 else None
    if rank not in (None, "0") and not args.debug:
        level = logging.WARNING  # one voice: the other ranks report only warnings and errors
    prefix = f"[rank {rank}] " if rank is not None else ""
    fmt = f"{prefix}%(levelname)s %(name)s: %(message)s" if verbose else f"ann2snn: {prefix}%(levelname)s: %(message)s"
    logging.basicConfig(level=level, format=fmt)
    try:
        if rank is not None and args.command in _DISTRIBUTED_COMMANDS:
            _join_process_group(args)
        return int(args._run(args) or 0)
    except Ann2SnnError as e:
        if args.debug:
            raise
        first, *rest = str(e).splitlines() or [type(e).__name__]
        if isinstance(e, DistributedRunError) and getattr(args, "checkpoint", None):
            # wherever this rank learnt of the failure (torchrun's SIGTERM, a collective that lost its peer)
            first += f"; the checkpoint {args.checkpoint} keeps the batches done"
        print(f"ann2snn: error: {prefix}{first}", file=sys.stderr)
        for line in rest:
            print(line, file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("ann2snn: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # output piped into e.g. `head`, which closed early: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:  # the file system refused (permissions, missing folder, disk full): one line, no traceback
        if args.debug:
            raise
        print(f"ann2snn: error: {e}", file=sys.stderr)
        return 1


_DISTRIBUTED_COMMANDS = ("convert", "evaluate")


def _join_process_group(args) -> None:
    """Under torchrun: join the process group, and turn torchrun's SIGTERM (sent when another rank failed)
    into a one-line error instead of a silent death."""
    from ann2snn import distributed

    group = distributed.init_from_env(device=getattr(args, "device", "cpu"),
                                      timeout_s=getattr(args, "dist_timeout", distributed.DEFAULT_TIMEOUT_S))

    def stopped(signum, frame):
        raise DistributedRunError(f"rank {group.rank} of {group.world_size}: stopped by torchrun (another rank "
                                  f"failed or the run was cancelled)")

    signal.signal(signal.SIGTERM, stopped)
    atexit.register(distributed.shutdown)


if __name__ == "__main__":
    sys.exit(main())
