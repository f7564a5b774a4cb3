"""The environment check of notebook 00: versions, device, low-precision support, threads."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

#: packages whose versions the welcome notebook reports
CORE_PACKAGES = (
    "torch",
    "numpy",
    "pandas",
    "matplotlib",
    "ipywidgets",
    "jupyterlab",
    "statsmodels",
    "pykalman",
    "sktime",
    "prophet",
    "gluonts",
    "nbval",
)


def package_versions(names: tuple[str, ...] = CORE_PACKAGES) -> dict[str, str]:
    """Installed versions (without importing the packages); 'missing' when absent."""
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def requirements(package: str = "helpers") -> dict[str, Requirement]:
    """The course's declared requirements (``pyproject.toml``, read back from the installed
    package's metadata, dev extras included), by normalised name."""
    try:
        declared = metadata.requires(package) or []
    except metadata.PackageNotFoundError:
        return {}
    reqs = (Requirement(r) for r in declared)
    return {r.name.lower(): r for r in reqs}


def satisfies(version: str, requirement: Requirement | None) -> bool:
    """Whether an installed ``version`` meets ``requirement`` (PEP 440, via ``packaging``; a
    local label such as ``+cpu`` does not matter). An exact pin (``==``) counts as a minimum: the
    lock pins what the course was tested with, and a newer patch release is fine; upper bounds
    (``numpy<2.4``: pykalman breaks there) are kept. True when nothing is required."""
    if version == "missing":
        return False
    if requirement is None:
        return True
    try:
        v = Version(version)
    except InvalidVersion:
        return False
    for spec in requirement.specifier:
        if spec.operator == "==" and "*" not in spec.version:
            if v < Version(spec.version):
                return False
        elif not spec.contains(v, prereleases=True):
            return False
    return True


def python_requirement(package: str = "helpers") -> SpecifierSet | None:
    """The course's ``requires-python`` (from the installed metadata; None when not installed)."""
    try:
        spec = metadata.metadata(package).get("Requires-Python")
    except metadata.PackageNotFoundError:
        return None
    return SpecifierSet(spec) if spec else None


def cpu_flags() -> set[str]:
    """CPU feature flags from /proc/cpuinfo (empty where unavailable)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


@dataclass(frozen=True)
class Check:
    name: str
    value: str
    ok: bool


def low_precision_support(device: str = "cpu") -> dict[str, str]:
    """Whether bf16/fp16 matmuls run on ``device`` and whether the hardware has units for them."""
    import torch  # heavy: the environment report works without torch installed

    out = {}
    for dt in (torch.bfloat16, torch.float16):
        name = str(dt).replace("torch.", "")
        try:
            a = torch.ones(8, 8, dtype=dt, device=device)
            ok = bool(((a @ a) == 8).all())
        except RuntimeError:
            ok = False
        if not ok:
            out[name] = "not supported"
        elif device == "cuda":
            major, _ = torch.cuda.get_device_capability()
            fast = major >= 8 if dt == torch.bfloat16 else major >= 7
            out[name] = "runs, Tensor Cores" if fast else "runs, no Tensor Cores (slow)"
        else:
            flags = cpu_flags()
            hw = {"amx_bf16", "avx512_bf16"} & flags if dt == torch.bfloat16 else {"amx_fp16", "avx512_fp16"} & flags
            out[name] = "runs, hardware support" if hw else "runs, emulated on this CPU (slow: a memory lesson here)"
    return out


def check_environment(device: str = "cpu") -> tuple[list[Check], bool]:
    """Rows for the welcome notebook's table, and the overall verdict."""
    import torch  # heavy: the environment report works without torch installed

    python = platform.python_version()
    wanted = python_requirement()
    rows = [Check("python", python, wanted is not None and wanted.contains(python))]
    declared = requirements()
    if not declared:
        rows.append(Check("course package", "helpers not installed: run make setup", False))
    versions = package_versions(CORE_PACKAGES)
    for name in CORE_PACKAGES:
        v = versions[name]
        rows.append(Check(name, v, satisfies(v, declared.get(name))))
    rows.append(Check("device", device, True))
    rows.append(Check("CPU cores / torch threads", f"{os.cpu_count()} / {torch.get_num_threads()}", True))
    for name, status in low_precision_support(device).items():
        rows.append(Check(f"{name} matmul", status, not status.startswith("not")))
    return rows, all(r.ok for r in rows)
