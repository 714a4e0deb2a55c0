"""``--help`` of every command: each option states its default at most once, never as None/False."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

COMMANDS = {"bids-app": [], "segment": ["segment"], "evaluate": ["evaluate"], "train": ["train"],
            "generate": ["generate"], "evaluate-model": ["evaluate-model"]}


def _help(args: list[str]) -> str:
    proc = subprocess.run([sys.executable, "-m", "synthseg_bids.cli.main", *args, "--help"],
                          capture_output=True, text=True, env={"COLUMNS": "100", "PATH": ""}, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _option_entries(text: str) -> dict[str, str]:
    """Help text of each option (from an indented '-x/--xx' line to the next one), whitespace joined."""
    entries: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        match = re.match(r"^  (-{1,2}[\w-]+)", line)
        if match:
            current = match.group(1)
            entries[current] = [line]
        elif current and line.startswith(" " * 4):
            entries[current].append(line)
        else:
            current = None
    return {k: " ".join(" ".join(v).split()) for k, v in entries.items()}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_option_states_its_default_at_most_once(command):
    entries = _option_entries(_help(COMMANDS[command]))
    assert len(entries) > 5  # the parsing above found the options
    doubled = {k: v for k, v in entries.items() if len(re.findall(r"\(default", v)) + v.count("; default") > 1}
    assert doubled == {}
    meaningless = {k: v for k, v in entries.items() if re.search(r"default: (None|False)\)", v)}
    assert meaningless == {}


def test_bids_app_help_keeps_useful_defaults():
    entries = _option_entries(_help([]))
    assert "(default: auto)" in entries["--device"]
    assert "(default: all)" in entries["--participant-label"]
    assert re.search(r"default: the number of CPUs, \d+ here", entries["--nprocs"])
    assert "(default: None)" not in entries["--omp-nthreads"] and "--nprocs" in entries["--omp-nthreads"]
