"""The packaged app's entry point (PyInstaller runs this as ``Hearth``).

With no arguments it opens the window, like double-clicking it; with arguments it is the
``hearth`` command line, so ``Hearth serve``, ``Hearth run smollm2:135m`` and
``Hearth --self-test`` work from the bundle with no Python installed.
"""

from __future__ import annotations

import multiprocessing
import sys


def main() -> int:
    # A frozen app re-runs itself for any multiprocessing child a library starts; this makes
    # such a child run its task instead of opening a second window.
    multiprocessing.freeze_support()
    # macOS's Finder passed a process serial number (-psn_0_12345) to apps before 10.9 and some
    # launchers still do: it is no command, so the window must open.
    argv = [arg for arg in sys.argv[1:] if not arg.startswith("-psn_")]
    from app.launcher import main as launch

    return launch(argv)


if __name__ == "__main__":
    raise SystemExit(main())
