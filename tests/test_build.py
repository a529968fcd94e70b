"""setup.py: its choice of kernels (one clear line saying which, FUSED_DROPOUT_BUILD_CUDA to force it), its
message when torch cannot be imported (pip's isolated build), and the single-sourced version.
(`setup.py --version` decides the extension without compiling anything.)"""
import os
import subprocess
import sys

import pytest
import torch

import fused_dropout

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_setup(**env):
    return subprocess.run([sys.executable, "setup.py", "--version"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


def test_forced_cpu_only_build_says_so():
    result = run_setup(FUSED_DROPOUT_BUILD_CUDA="0")
    assert result.returncode == 0, result.stderr
    assert "fused_dropout: building the CPU kernels only (FUSED_DROPOUT_BUILD_CUDA=0)" in result.stdout


def test_default_build_names_its_reason():
    result = run_setup()
    assert result.returncode == 0, result.stderr
    if torch.version.cuda is None:
        assert "building the CPU kernels only" in result.stdout and "is a CPU build" in result.stdout
    else:
        assert "building the CPU and CUDA kernels" in result.stdout or "nvcc was not found" in result.stdout


@pytest.mark.skipif(torch.version.cuda is not None, reason="a CUDA build of torch can build the CUDA kernels")
def test_forcing_cuda_without_cuda_torch_fails_clearly():
    result = run_setup(FUSED_DROPOUT_BUILD_CUDA="1")
    assert result.returncode != 0
    assert "FUSED_DROPOUT_BUILD_CUDA=1 but torch is not a CUDA build" in result.stderr


def run_setup_without_torch(fake_isolated_env):
    """setup.py as pip runs it when torch cannot be imported, inside pip's isolated build env or outside it."""
    code = (
        "import runpy, sys\n"
        "sys.modules['torch'] = None\n"  # `import torch` raises ImportError, as where no torch is installed
        f"if {fake_isolated_env}: sys.path.insert(0, '/tmp/pip-build-env-fake/overlay/lib/site-packages')\n"
        "sys.argv = ['setup.py', '--version']\n"
        "runpy.run_path('setup.py', run_name='__main__')\n"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_plain_pip_install_names_build_isolation_and_the_fix():
    result = run_setup_without_torch(fake_isolated_env=True)
    assert result.returncode != 0
    assert "isolated environment that has no torch" in result.stderr
    assert result.stderr.strip().endswith("build with: pip install --no-build-isolation .")


def test_missing_torch_outside_isolation_says_install_torch():
    result = run_setup_without_torch(fake_isolated_env=False)
    assert result.returncode != 0
    assert "Install torch first" in result.stderr and "isolated" not in result.stderr
    assert result.stderr.strip().endswith("build with: pip install --no-build-isolation .")


def test_version_has_one_source():
    """pyproject.toml's dynamic version and fused_dropout.__version__ both come from fused_dropout/_version.py."""
    import fused_dropout
    from fused_dropout import _version

    result = run_setup(FUSED_DROPOUT_BUILD_CUDA="0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == _version.__version__ == fused_dropout.__version__
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        pyproject = f.read()
    assert 'version = { attr = "fused_dropout._version.__version__" }' in pyproject
    assert 'license-files = ["LICENSE"]' in pyproject and os.path.exists(os.path.join(ROOT, "LICENSE"))


def test_torch_requirement_is_the_building_torchs_major_minor(tmp_path):
    result = subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    (requires,) = tmp_path.glob("*.egg-info/requires.txt")
    major, minor = torch.__version__.split("+")[0].split(".")[:2]
    assert requires.read_text().splitlines()[0] == f"torch=={major}.{minor}.*"


def import_with_build_record(record):
    """Imports fused_dropout in a fresh process whose fused_dropout/_build_info.py says TORCH_VERSION=record
    (None: no record at all). Prints whether _C was loaded, the backends, and the warnings."""
    code = (
        "import sys, types, warnings\n"
        f"record = {record!r}\n"
        "if record is None:\n"
        "    sys.modules['fused_dropout._build_info'] = None\n"  # import of the record fails, as when it is missing
        "else:\n"
        "    info = types.ModuleType('fused_dropout._build_info')\n"
        "    info.TORCH_VERSION, info.TORCH_CUDA = record, None\n"
        "    sys.modules['fused_dropout._build_info'] = info\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    import fused_dropout\n"
        "print('loaded:', 'fused_dropout._C' in sys.modules)\n"
        "print('backends:', fused_dropout.available_backends())\n"
        "for w in caught:\n"
        "    print('warning:', w.category.__name__, w.message)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "TRITON_INTERPRET": "0"})
    assert result.returncode == 0, result.stderr
    return result.stdout


native_built = pytest.mark.skipif(not fused_dropout._native.LOADED, reason="needs a built, loadable _C")


@native_built
def test_c_built_with_another_torch_is_not_loaded_and_the_warning_says_why():
    out = import_with_build_record("2.99.0")
    assert "loaded: False" in out and "backends: ['torch']" in out
    assert f"was built with torch 2.99.0 but torch {torch.__version__} is running" in out
    assert "RuntimeWarning" in out and "pip install --no-build-isolation -e ." in out


@native_built
def test_c_without_a_build_record_is_not_loaded():
    out = import_with_build_record(None)
    assert "loaded: False" in out and "has no record of the torch it was built with" in out


@native_built
def test_c_built_with_another_patch_release_loads():
    major, minor = torch.__version__.split("+")[0].split(".")[:2]
    out = import_with_build_record(f"{major}.{minor}.99")
    assert "loaded: True" in out and "'cpu'" in out and "warning:" not in out
