"""Worker process of the library generator: render the episodes listed in a JSON job file.

Run as ``python -m data.synth._worker JOBS.json``; JOBS.json is a list of jobs, each with a
``result`` path where the episode's ground-truth entry is written (atomically) when done.
The generator starts these as plain subprocesses rather than through multiprocessing, so
it works from any caller (scripts without a ``__main__`` guard, threaded programs, pytest).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from data.synth.library import _render_episode


def main(argv: list[str] | None = None) -> int:
    """Render every job in the file named by the only argument."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m data.synth._worker JOBS.json\n")
        return 2
    for job in json.loads(Path(args[0]).read_text(encoding="utf-8")):
        entry = _render_episode(job)
        out = Path(job["result"])
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(entry), encoding="utf-8")
        tmp.replace(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
