"""Execute a notebook headless in a real kernel and print what its cells computed.

Used by ``make demo``. Usage: ``python tools/run_notebook.py NOTEBOOK [--timeout S]``.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import nbformat
from nbclient import NotebookClient


def text_of(output: dict) -> str:
    if output.get("output_type") == "stream":
        return output.get("text", "")
    if output.get("output_type") in ("execute_result", "display_data"):
        return output.get("data", {}).get("text/plain", "")
    if output.get("output_type") == "error":
        return f"{output.get('ename')}: {output.get('evalue')}"
    return ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("notebook", type=pathlib.Path)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    nb = nbformat.read(args.notebook, as_version=4)
    started = time.monotonic()
    client = NotebookClient(nb, timeout=args.timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(args.notebook.parent)}})
    client.execute()
    for n, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        shown = [text_of(o).rstrip() for o in cell.get("outputs", [])]
        shown = [s for s in shown if s]
        if shown:
            first = cell.source.strip().splitlines()[-1] if cell.source.strip() else ""
            print(f"[{n + 1}] {first}")
            for s in shown:
                print("    " + s.replace("\n", "\n    "))
    print(f"\n{args.notebook.name}: executed in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
