#!/bin/sh
# Installs synthseg-bids into a new virtual environment, for the images (Dockerfile and the
# Apptainer recipes). Usage: install.sh VARIANT SOURCE VENV
#   VARIANT cpu: `pip install SOURCE` with TensorFlow's CPU-only wheel (tensorflow-cpu, the same
#                release as the package's `tensorflow` requirement, without the CUDA kernels);
#                every other package is resolved exactly as `pip install SOURCE` resolves it.
#   VARIANT gpu: `pip install SOURCE[gpu]` (TensorFlow with its CUDA libraries as pip wheels).
# Versions: SOURCE/containers/constraints.txt, the tested ones (CI's environment has the same).
# Then files not used at run time are removed from the environment (the installed versions do
# not change): no bytecode caches (written at install only, Python compiles in memory), the
# C/C++ headers of TensorFlow, libclang's library (TensorFlow's build-time dependency, never
# loaded), the packages' test suites (folders named `tests`), and the symbol tables of
# TensorFlow's shared libraries (`strip --strip-unneeded`; binutils is installed for that
# and removed again when the system lacks it).
set -eu
[ "$#" -eq 3 ] || { echo "usage: install.sh cpu|gpu SOURCE VENV" >&2; exit 2; }
variant=$1 source=$2 venv=$3
case "$variant" in
  cpu|gpu) ;;
  *) echo "synthseg-bids image: VARIANT must be cpu or gpu, not '$variant'" >&2; exit 2 ;;
esac
python3 -m venv "$venv"
pip="$venv/bin/pip --disable-pip-version-check --no-cache-dir --quiet"
constraints="--constraint $source/containers/constraints.txt"
wheels=$(mktemp -d)
$pip wheel --no-deps --wheel-dir "$wheels" "$source"
wheel=$(ls "$wheels"/synthseg_bids-*.whl)
if [ "$variant" = gpu ]; then
  $pip install --no-compile $constraints "synthseg-bids[gpu] @ file://$wheel"
else
  # the wheel's requirements without extras, tensorflow -> tensorflow-cpu; the package itself last
  "$venv/bin/python" - "$wheel" > "$wheels/requirements.txt" <<'PY'
import email, re, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    metadata = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    requires = email.message_from_bytes(wheel.read(metadata)).get_all("Requires-Dist") or []
for requirement in requires:
    if "extra ==" not in requirement:
        print(re.sub(r"^tensorflow(?=[\s~=<>!;]|$)", "tensorflow-cpu", requirement))
PY
  $pip install --no-compile $constraints --requirement "$wheels/requirements.txt"
  $pip install --no-compile --no-deps "$wheel"
fi
rm -rf "$wheels"

site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
find "$venv" -depth -type d -name __pycache__ -exec rm -rf {} +
find "$site" -mindepth 2 -depth -type d -name tests -exec rm -rf {} +
rm -rf "$site/tensorflow/include" "$site/clang/native"
if ! command -v strip >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends binutils >/dev/null
  remove_binutils=1
fi
find "$site/tensorflow" -type f -name "*.so*" -exec strip --strip-unneeded {} +
if [ -n "${remove_binutils:-}" ]; then
  DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq --auto-remove binutils >/dev/null
  rm -rf /var/lib/apt/lists/*
fi
