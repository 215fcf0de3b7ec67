"""``python -m nbtasks.store``: what the run store holds, its size limit, and pruning runs.

    python -m nbtasks.store size [--store PATH]
    python -m nbtasks.store prune --older-than 30d [--name TASK] [--store PATH]
    python -m nbtasks.store limit [5GB | none | default] [--store PATH]
"""

from __future__ import annotations

import argparse
import sqlite3
import sys

from .amounts import format_size
from .housekeeping import LIMIT_ENV, prune, set_size_limit, size_limit, usage
from .location import ENV


def _parser() -> argparse.ArgumentParser:
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument("--store", metavar="PATH",
                       help=f"the store's database file (default: ${ENV}, else runs.db in the Jupyter data dir)")
    parser = argparse.ArgumentParser(prog="python -m nbtasks.store", description=(
        "The nbtasks run store: how much it holds, its size limit, and removing old runs."))
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("size", parents=[store], help="how much the store holds, and its limit",
                        description="Bytes of results kept (database and files), runs, and the size limit.")
    cut = commands.add_parser(
        "prune", parents=[store], help="remove whole runs (records and results) by age and/or task name",
        description="Remove runs submitted before --older-than and/or of task --name (both given: both must "
                    "match), with their units, failures and the results no remaining run uses. Live runs stay.")
    cut.add_argument("--older-than", metavar="AGE", help="e.g. 30d, 12h, 90min, 2w, or seconds")
    cut.add_argument("--name", metavar="TASK", help="the task's name as runs list it (e.g. parallel(simulate))")
    limit = commands.add_parser(
        "limit", parents=[store], help="show or set the size limit for results",
        description=f"Show the limit, or set it in the store (every kernel and the Jupyter server use it; "
                    f"${LIMIT_ENV} still wins where it is set). When results pass it, the oldest runs' "
                    "results are dropped first; their records stay.")
    limit.add_argument("size", nargs="?", metavar="SIZE", help="e.g. 5GB, 500MB, 20GiB; 'none'; 'default'")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "size":
            print(usage(args.store))
        elif args.command == "prune":
            if args.older_than is None and args.name is None:
                parser.error("prune needs --older-than AGE and/or --name TASK (--older-than 0: every finished run)")
            pruned = prune(older_than=args.older_than, name=args.name, store=args.store)
            print(pruned)
            for run_id in pruned.runs:
                print(f"  {run_id}")
        elif args.size is None:
            print(format_size(size_limit(args.store)))
        else:
            print(format_size(set_size_limit(None if args.size == "default" else args.size, args.store)))
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))
    except (sqlite3.Error, OSError) as exc:  # the file cannot be read or written now
        print(f"{parser.prog}: the run store cannot be used: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
