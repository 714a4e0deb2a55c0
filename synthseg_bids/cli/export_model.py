"""``synthseg-bids export-model``: write a synthseg-bids model in SynthSeg's Keras 2 ``.h5`` layout.

::

    synthseg-bids export-model MODEL.npz OUT.h5 [--overwrite]

The output is the weights-only layout of Keras 2's ``save_weights`` with SynthSeg's layer
names (``unet_conv_downarm_L_C``, ..., ``unet_likelihood``) and output channels in sorted
label order, so that FreeSurfer's ``mri_synthseg`` code can load it (``load_weights(...,
by_name=True)``) and :mod:`synthseg_bids.inference.official` can read it back. FreeSurfer
7.3.2's ``mri_synthseg`` builds a network of 24 base features (5 levels, ...): for a model of
another architecture, a note says what ``mri_synthseg`` would have to change.

Exit status: 0 written; 1 the model cannot be read or exported, or the output exists
(without ``--overwrite``); 2 usage error. Nothing is left under ``OUT.h5`` on failure.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from .. import __version__
from .arguments import CommandParser

__all__ = ["PROG", "build_parser", "main"]

PROG = "synthseg-bids export-model"


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of ``synthseg-bids export-model`` (imports nothing heavy)."""
    parser = CommandParser(
        prog=PROG,
        description="Write a synthseg-bids model file (.npz) as a Keras 2 weights-only .h5 file in SynthSeg's "
        "layout (layer names and channel order of SynthSeg's published networks), for FreeSurfer's mri_synthseg "
        "and other Keras 2 code.",
        epilog="Exit status: 0 written, 1 the model cannot be exported or OUT exists (use --overwrite), "
        "2 usage error.",
    )
    parser.add_argument("--version", action="version", version=f"synthseg-bids {__version__}")
    parser.add_argument("model", metavar="MODEL.npz", help="model file written by synthseg-bids (e.g. by training)")
    parser.add_argument("output", metavar="OUT.h5", help="the .h5 file to write")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT.h5 if it exists")
    return parser


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (see the module docstring)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    model, output = Path(args.model), Path(args.output)
    if output.suffix.lower() not in (".h5", ".hdf5"):
        parser.error(f"{output}: the output must end in .h5")
    if not model.is_file():
        _say(f"{PROG}: error: {model}: model file not found")
        return 1
    if output.exists() and not args.overwrite:
        _say(f"{PROG}: error: {output}: exists already (use --overwrite to replace it)")
        return 1
    if output.exists() and output.resolve() == model.resolve():
        parser.error(f"{output}: the output would replace the model file")

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from ..network.official import export_h5

    try:
        written = export_h5(model, output)
    except (ValueError, OSError) as err:  # ModelFileError is a ValueError
        _say(f"{PROG}: error: {err}")
        return 1
    from ..network.keras2_h5 import read_weights
    from ..network.official import infer_architecture, mri_synthseg_incompatibility

    _say(f"{PROG}: wrote {written}")
    reason = mri_synthseg_incompatibility(infer_architecture(read_weights(written)))
    if reason is not None:
        _say(f"{PROG}: note: FreeSurfer 7.3.2's mri_synthseg cannot run it unchanged: {reason}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
