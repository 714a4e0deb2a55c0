"""Arguments shared by the ``synthseg-bids`` commands.

Every command's parser is a :class:`CommandParser`: a usage error is one line
``PROG: error: <problem>`` on stderr and exit status 2; the usage block comes only with
``--help``, or before the error when no arguments were given at all. Argparse ``type=``
callables raise :class:`argparse.ArgumentTypeError`, which becomes such a line
(``PROG: error: argument --option: <problem>``).
:func:`add_official_model_options` and :func:`model_choice_problem` are the one home of
``mri_synthseg``'s choice of published networks (``--model-dir DIR [--v1 | --robust] [--parc]``),
used by the BIDS-App and by ``synthseg-bids segment``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, NoReturn, Sequence

__all__ = [
    "OFFICIAL_SWITCHES",
    "CommandParser",
    "add_accuracy_options",
    "add_official_model_options",
    "model_choice_problem",
    "positive_int",
]

#: The switches of :func:`add_official_model_options` that need ``--model-dir``.
OFFICIAL_SWITCHES = ("v1", "robust", "parc")


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


def model_choice_problem(args: argparse.Namespace, switches: tuple[str, ...] = OFFICIAL_SWITCHES) -> str | None:
    """Why the parsed model options cannot be combined (a usage error), or None.

    ``switches`` are the options (attribute names) that select published networks and so
    need ``--model-dir``: :data:`OFFICIAL_SWITCHES`, plus the BIDS-App's ``qc`` flag.
    """
    if args.model is not None and args.model_dir is not None:
        return "give either --model FILE or --model-dir DIR, not both"
    if args.v1 and args.robust:
        return "--v1 cannot be used with --robust: SynthSeg-robust only exists in version 2.0 (drop --v1)"
    given = [f"--{name}" for name in switches if getattr(args, name)]
    if given and args.model_dir is None:
        return (f"{', '.join(given)} select(s) SynthSeg's published networks in a model folder: add --model-dir "
                "DIR (e.g. --model-dir $FREESURFER_HOME/models)")
    return None
