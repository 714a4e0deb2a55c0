"""Arguments shared by the ``synthseg-bids`` commands.

Every command's parser is a :class:`CommandParser`: a usage error is one line
``PROG: error: <problem>`` on stderr and exit status 2; the usage block comes only with
``--help``, or before the error when no arguments were given at all. Argparse ``type=``
callables raise :class:`argparse.ArgumentTypeError`, which becomes such a line
(``PROG: error: argument --option: <problem>``).
:func:`add_official_model_options` adds ``mri_synthseg``'s choice of published networks
(``--model-dir DIR [--v1 | --robust] [--parc]``) and :func:`model_choice_of` turns the parsed model
options into the one :class:`~synthseg_bids.inference.model_choice.ModelChoice`, for the BIDS-App
and for ``synthseg-bids segment``.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any, Callable, NoReturn, Sequence

if TYPE_CHECKING:
    from ..inference.model_choice import ModelChoice

__all__ = [
    "CommandParser",
    "add_accuracy_options",
    "add_official_model_options",
    "model_choice_of",
    "positive_int",
]


class CommandParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, without the usage block.

    The usage is printed before the error only when the command was given no arguments
    (a first try, where it helps); ``--help`` prints it as always.
    """

    _given_nothing = False

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: Any = None):
        self._given_nothing = not (sys.argv[1:] if args is None else list(args))
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        """Print ``PROG: error: message`` (after the usage only when no arguments were given); exit 2."""
        if self._given_nothing:
            self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def positive_int(text: str) -> int:
    """An integer >= 1 (``--nprocs``, ``--threads``, ``--crop``, ``--n``, ...)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_accuracy_options(group: Any) -> None:
    """Add ``--precision`` and ``--shifts`` (the network's arithmetic and the shifted-window ensemble)."""
    group.add_argument("--precision", choices=["auto", "float32", "bfloat16"], default=None,
                       help="arithmetic of the network: 'auto' (default) runs bfloat16 where the device computes it "
                       "natively (CPUs with AVX512-BF16 or AMX, NVIDIA GPUs of compute capability >= 8.0: about 2x "
                       "faster on such CPUs, same Dice) and float32 elsewhere")
    group.add_argument("--shifts", type=positive_int, metavar="N", default=None,
                       help="test-time ensemble: average the network's posteriors over N copies of the window "
                       "shifted by fractions of the network's size multiple (default 1: the window alone, as "
                       "mri_synthseg; each copy costs one more network pass and, with flip, about two window-sized "
                       "posterior arrays of memory)")


def add_official_model_options(group: Any, *, folder_type: Callable[[str], Any] = str, parc_output: str) -> None:
    """Add ``--model-dir``, ``--v1``, ``--robust`` and ``--parc`` to an argparse (group of a) parser.

    Parameters
    ----------
    group : argparse.ArgumentParser or argument group
        Where the options go.
    folder_type : callable
        ``type=`` of ``--model-dir`` (a folder check, or ``str`` to check it later).
    parc_output : str
        The label map that gets the parcels, and where their volumes go (ends the help text).
    """
    group.add_argument("--model-dir", "--model_dir", dest="model_dir", type=folder_type, metavar="DIR",
                       help="folder of SynthSeg's .h5 networks, e.g. $FREESURFER_HOME/models (FreeSurfer 7.3+); "
                       "files are chosen as mri_synthseg does: synthseg_2.0.h5 unless --v1 or --robust")
    group.add_argument("--v1", action="store_true", help="SynthSeg 1.0 (synthseg_1.0.h5; needs --model-dir)")
    group.add_argument("--robust", action="store_true",
                       help="SynthSeg-robust 2.0 (synthseg_robust_2.0.h5; needs --model-dir; implies the fast "
                       "mode; not with --v1)")
    group.add_argument("--parc", action="store_true",
                       help="cortical parcellation (synthseg_parc_2.0.h5; needs --model-dir): Desikan-Killiany "
                       f"parcels in the cortex of {parc_output}")


def model_choice_of(parser: argparse.ArgumentParser, args: argparse.Namespace, *, network_qc: bool) -> ModelChoice:
    """The :class:`~synthseg_bids.inference.model_choice.ModelChoice` of the parsed ``--model``,
    ``--model-dir``, ``--v1``, ``--robust`` and ``--parc`` (and ``network_qc``, which each command
    derives from its own ``--qc``); options that cannot be combined are a usage error (exit 2).
    Its files are not looked for here (:meth:`~synthseg_bids.inference.model_choice.ModelChoice.files`).
    """
    from ..inference.model_choice import ModelChoice, ModelSelectionError

    try:
        return ModelChoice(file=args.model, folder=args.model_dir, v1=args.v1, robust=args.robust,
                           parcellation=args.parc, network_qc=network_qc)
    except ModelSelectionError as err:
        parser.error(str(err))
