"""A real single-node SLURM cluster on localhost, started and stopped by a test.

Uses the distribution's daemons (Debian: ``apt-get install slurm-wlm munge``): ``munged``
with its own key and socket, ``slurmctld`` and ``slurmd`` in the foreground, all under a
temporary folder, on free TCP ports, so the machine's own configuration (if any) is neither
read nor touched. Clients (``sbatch``, ``squeue``, ``scontrol``, and Nipype's SLURM plugin,
which calls them) find the cluster through the ``SLURM_CONF`` variable of :attr:`env`.

The node has as many CPUs as the machine and 90 % of its memory; jobs run as the current user with
``proctrack/linuxproc`` and no cgroups, which works inside containers.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "sinfo", "scancel")


def missing_programs() -> list[str]:
    """Names of the SLURM/munge programs not found on PATH (or in /usr/sbin)."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return [name for name in DAEMONS + CLIENTS if shutil.which(name, path=path) is None]


def _free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free on localhost now (all held open until chosen)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _memory_mb() -> int:
    """Nine tenths of the machine's memory in MB (what the node offers to ``--mem``)."""
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.9 / 2**20)


class SlurmCluster:
    """Context manager: ``with SlurmCluster(folder) as cluster: ... cluster.env ...``.

    Raises ``RuntimeError`` with the daemons' log tails when the node does not come up idle
    within ``timeout`` seconds.
    """

    def __init__(self, folder: Path, *, cpus: int | None = None, timeout: float = 60.0):
        self.folder = Path(folder)
        self.cpus = cpus or os.cpu_count() or 1
        self.timeout = timeout
        self._procs: list[subprocess.Popen] = []
        self._path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
        self.env = dict(os.environ, SLURM_CONF=str(self.folder / "slurm.conf"), PATH=self._path)

    def _program(self, name: str) -> str:
        found = shutil.which(name, path=self._path)
        if found is None:
            raise RuntimeError(f"{name} is not installed")
        return found

    def _write_config(self) -> None:
        user = pwd.getpwuid(os.getuid()).pw_name
        for sub in ("munge", "state", "spool", "log"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        (self.folder / "munge").chmod(0o700)
        key = self.folder / "munge" / "munge.key"
        key.write_bytes(os.urandom(128))
        key.chmod(0o600)
        f = self.folder
        ctld_port, slurmd_port = _free_ports(2)
        config = f"""\
ClusterName=synthsegtest
SlurmctldHost=localhost
SlurmUser={user}
SlurmdUser={user}
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={f}/munge/munge.socket
StateSaveLocation={f}/state
SlurmdSpoolDir={f}/spool
SlurmctldPidFile={f}/slurmctld.pid
SlurmdPidFile={f}/slurmd.pid
SlurmctldLogFile={f}/log/slurmctld.log
SlurmdLogFile={f}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MinJobAge=3600
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=localhost NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={_memory_mb()} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
        (f / "slurm.conf").write_text(config)

    def _start(self, *argv: str) -> None:
        log = open(self.folder / "log" / f"{Path(argv[0]).name}.stdout", "wb")
        self._procs.append(subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                            start_new_session=True))
        log.close()

    def logs(self) -> str:
        """The last lines of each daemon's log, for error messages."""
        parts = []
        for path in sorted((self.folder / "log").glob("*")):
            lines = path.read_text(errors="replace").splitlines()[-8:]
            parts.append(f"--- {path.name}\n" + "\n".join(lines))
        return "\n".join(parts)

    def run(self, *argv: str) -> str:
        """Run a SLURM client command against this cluster; returns its stdout."""
        done = subprocess.run([self._program(argv[0]), *argv[1:]], env=self.env, capture_output=True, text=True,
                              timeout=60)
        if done.returncode:
            raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
        return done.stdout

    def jobs(self) -> list[dict[str, str]]:
        """Every job the controller knows (finished ones included), as ``{field: value}``."""
        text = self.run("scontrol", "show", "job", "--oneliner")
        return [dict(item.split("=", 1) for item in line.split() if "=" in item)
                for line in text.splitlines() if line.startswith("JobId=")]

    def __enter__(self) -> "SlurmCluster":
        self._write_config()
        f = self.folder
        try:
            self._start(self._program("munged"), "--foreground", "--force", f"--socket={f}/munge/munge.socket",
                        f"--key-file={f}/munge/munge.key", f"--log-file={f}/log/munged.log",
                        f"--pid-file={f}/munge/munged.pid", f"--seed-file={f}/munge/munged.seed")
            self._wait(lambda: (f / "munge" / "munge.socket").exists(), "munged did not create its socket")
            self._start(self._program("slurmctld"), "-D", "-c", "-f", str(f / "slurm.conf"))
            self._start(self._program("slurmd"), "-D", "-f", str(f / "slurm.conf"), "-N", "localhost")
            self._wait(self._node_idle, "the SLURM node did not become idle")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _node_idle(self) -> bool:
        try:
            return self.run("sinfo", "-h", "-N", "-o", "%t").strip() == "idle"
        except (RuntimeError, subprocess.TimeoutExpired):
            return False

    def _wait(self, ready, message: str) -> None:
        end = time.monotonic() + self.timeout
        while time.monotonic() < end:
            if any(p.poll() is not None for p in self._procs):
                break
            if ready():
                return
            time.sleep(0.5)
        raise RuntimeError(f"{message} within {self.timeout:.0f} s\n{self.logs()}")

    def __exit__(self, *exc) -> None:
        if self._procs and all(p.poll() is None for p in self._procs[1:]):
            subprocess.run([self._program("scancel"), "--full", "--user", pwd.getpwuid(os.getuid()).pw_name],
                           env=self.env, capture_output=True, timeout=30)
        for proc in reversed(self._procs):  # slurmd, slurmctld, then munged
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self._procs.clear()
