"""``python -m sqakd_edge`` is the CLI; ``torchrun -m sqakd_edge train ...`` runs it per process."""

import os
import sys

from .cli import main


def _run_under_torchrun() -> None:
    """Run the CLI, then leave without interpreter finalization.

    Gloo's worker threads can still hold work objects (with tensors) when Python tears itself down, and a
    rank then aborts at exit ("terminate called without an active exception", pytorch/pytorch#179291),
    after everything it wrote was already closed and renamed into place. Every output is written
    atomically before this point, so exiting at once loses nothing.
    """
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        _run_under_torchrun()
    else:
        main()
