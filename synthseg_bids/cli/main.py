"""The ``synthseg-bids`` console entry point.

Two kinds of call share one command:

- the BIDS-App form, ``synthseg-bids bids_dir output_dir {participant,group} [options]``
  (:mod:`synthseg_bids.cli.run`);
- tool subcommands named by the first argument: ``synthseg-bids segment ...`` (the
  original SynthSeg command line, :mod:`synthseg_bids.cli.segment`),
  ``synthseg-bids evaluate ...`` (:mod:`synthseg_bids.cli.evaluate`) and the whole jobs
  run from the recipes of ``workflows/``: ``train``, ``generate`` and ``evaluate-model``
  (:mod:`synthseg_bids.cli.train`, :mod:`~synthseg_bids.cli.generate`,
  :mod:`~synthseg_bids.cli.evaluate_model`); see :data:`SUBCOMMANDS`.

A first argument that is a subcommand name is never taken as a BIDS folder; to use a
dataset folder literally called ``segment``, write ``./segment``.

Each command module exposes ``build_parser()`` and ``main(argv) -> int``; modules are
imported only when their command runs, so ``--help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys

from .quiet_logs import quiet_native_logs, verbosity_from_argv
from .user_caches import redirect_caches_without_home

__all__ = ["SUBCOMMANDS", "main"]

#: Subcommand name -> (module, one-line description).
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "segment": ("synthseg_bids.cli.segment", "segment scans, folders or lists of scans (SynthSeg's command line)"),
    "evaluate": ("synthseg_bids.cli.evaluate", "score segmentations against references (Dice, surface distances)"),
    "train": ("synthseg_bids.cli.train", "train the U-Net on synthetic images from label maps, then validate it"),
    "generate": ("synthseg_bids.cli.generate", "write synthetic image + label map examples and a montage"),
    "evaluate-model": ("synthseg_bids.cli.evaluate_model", "measure a model: Dice vs step, contrast/resolution, MNI152"),
    "export-model": ("synthseg_bids.cli.export_model", "write a model as a Keras 2 .h5 file in SynthSeg's layout"),
}


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a subcommand or to the BIDS-App; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    redirect_caches_without_home()  # any uid, $HOME unset or read-only (containers)
    # before any command module runs, so before anything imports TensorFlow (workers inherit it)
    with quiet_native_logs(verbosity_from_argv(argv)):
        if argv and argv[0] in SUBCOMMANDS:
            module = importlib.import_module(SUBCOMMANDS[argv[0]][0])
            return int(module.main(argv[1:]) or 0)
        module = importlib.import_module("synthseg_bids.cli.run")
        return int(module.main(argv) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
