"""Small shared helpers: atomic writes, provenance, device-free tensor conversion."""
from __future__ import annotations

import os
import platform
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import EdgeeasUsageError

__all__ = ["portable_path", "portable_source", "check_output_dir", "check_output_file", "OutputPathError", "atomic_write", "atomic_write_text", "atomic_torch_save", "read_yaml", "save_figure", "sha256_file",
           "versions", "command_line", "machine", "mkdtemp_beside", "clean_stale_temps"]


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb"):
    """Write to a temporary file beside ``path`` and rename it over ``path`` on success, so a
    reader (or a crash) never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the mode open() would
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8 by the locale's default) to ``path`` atomically: see
    :func:`atomic_write`.  Creates missing parent folders; raises ``OSError`` as ``open`` does."""
    with atomic_write(path, "w") as f:
        f.write(text)


def _temp_prefix(dest: Path) -> str:
    """``.NAME.PID.``: a temporary beside ``dest`` names the process that made it, so a later
    run can tell a killed run's leftover (its process is gone) from a live one's."""
    return f".{Path(dest).name}.{os.getpid()}."


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temps(dest: str | os.PathLike) -> list[Path]:
    """Remove the temporary files and folders beside ``dest`` (``.NAME.PID.*.tmp``) whose
    process is gone (a ``kill -9`` leaves them); those of live processes are kept.  Returns
    what was removed."""
    import re
    import shutil

    dest = Path(dest)
    removed = []
    if not dest.parent.is_dir():
        return removed
    pat = re.compile(rf"^\.{re.escape(dest.name)}\.(\d+)\..*\.tmp$")
    for p in dest.parent.iterdir():
        m = pat.match(p.name)
        if not m or _pid_alive(int(m.group(1))):
            continue
        try:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
            removed.append(p)
        except FileNotFoundError:
            pass
    return removed


def mkdtemp_beside(dest: Path) -> Path:
    """A temporary folder beside ``dest`` (same file system, so it can be renamed into place),
    with the mode a plain mkdir would give it."""
    clean_stale_temps(dest)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(dest), suffix=".tmp", dir=dest.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    return tmp


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    """``torch.save(obj)`` to ``path`` atomically (temporary file, fsync, rename), so a killed
    run leaves the previous checkpoint whole.  Read it back with ``weights_only=True``."""
    import torch

    with atomic_write(path, "wb") as f:
        torch.save(obj, f)


def _strict_loader():
    """A ``yaml.SafeLoader`` that refuses a mapping with the same key twice (plain YAML keeps the
    last value silently), raising :class:`_DuplicateKey` with both lines."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen: dict = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: let PyYAML report it
                    break
                if first is not None:
                    raise _DuplicateKey(key, first, key_node.start_mark.line + 1)
                seen[key] = key_node.start_mark.line + 1
            return super().construct_mapping(node, deep=deep)
    return StrictLoader


class _DuplicateKey(Exception):
    def __init__(self, key, first: int, line: int):
        super().__init__(key)
        self.key, self.first, self.line = key, first, line


def read_yaml(path: str | os.PathLike, what: str, error: type[Exception], hint: str = "", *, compose: bool = False):
    """A user's YAML file, loaded safely; an unreadable file, bad YAML or a key given twice in one
    mapping raises ``error`` with one line naming the file, the line of the mistake and ``hint``
    (the expected form).  ``compose=True`` returns the node tree (``yaml.compose``: every key and
    item with its line) instead of Python values."""
    import yaml

    path = Path(path)
    tail = f"; {hint}" if hint else ""
    try:
        text = path.read_text()
        loader = _strict_loader()
        doc = yaml.load(text, Loader=loader)  # noqa: S506 - a SafeLoader subclass
        return yaml.compose(text, Loader=yaml.SafeLoader) if compose else doc
    except OSError as e:
        raise error(f"{what} {path}: cannot read ({e.strerror or e}){tail}") from None
    except _DuplicateKey as e:
        raise error(f"{what} {path} line {e.line}: key {e.key!r} is given twice (first at line {e.first}); "
                    f"each key may appear once{tail}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise error(f"{what} {path}: not readable YAML{at}{tail}") from None


def save_figure(fig, path: str | os.PathLike) -> None:
    """A matplotlib figure as a PNG, written atomically, then closed."""
    import matplotlib.pyplot as plt

    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks (manifests record a model's hash).
    Raises ``OSError`` if the file cannot be read."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def versions() -> dict[str, str]:
    """Versions of what made an output (only of modules already imported or cheap to find)."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("edgeeas", "torch", "numpy", "ai-edge-litert", "litert-torch", "onnx", "adb-shell"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def machine() -> dict[str, object]:
    """The host that made an output: ``cpu`` (``/proc/cpuinfo``'s model name where there is one),
    ``cores`` (``os.cpu_count()``), ``system``, ``machine`` (architecture) and ``kernel``."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "system": platform.system(),
            "machine": platform.machine(), "kernel": platform.release()}


def command_line() -> str:
    """The running command as a shell-quoted string (program name without its folder, then
    ``sys.argv[1:]``), as outputs record it to say what made them."""
    import shlex

    argv = [Path(sys.argv[0]).name] + sys.argv[1:]
    return " ".join(shlex.quote(a) for a in argv)


class OutputPathError(EdgeeasUsageError):
    """An output path that cannot be written (a file where a folder must be, a folder where a
    file must be, no write permission): found before any work, a usage error (exit 2)."""


def check_output_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """``path`` as a Path if it is, or can become, a writable folder: every existing part of it
    is a folder and the deepest existing one is writable.  Call it before any work.

    Raises:
        OutputPathError: one line naming the part that is in the way."""
    p = Path(path)
    for part in [p, *p.parents]:
        if part.exists() or part.is_symlink():
            if not part.is_dir():
                where = "it is a file" if part == p else f"{part} is a file, not a folder"
                raise OutputPathError(f"cannot write the {what} {p}: {where}")
            if not os.access(part, os.W_OK | os.X_OK):
                raise OutputPathError(f"cannot write the {what} {p}: no write permission on {part}")
            return p
    return p


def check_output_file(path: str | os.PathLike, what: str = "output file") -> Path:
    """``path`` as a Path if a file can be written there (see :func:`check_output_dir`; a folder
    at ``path`` itself is in the way too).  Call it before any work."""
    p = Path(path)
    if p.is_dir():
        raise OutputPathError(f"cannot write the {what} {p}: it is a folder")
    for part in p.parents:
        if part.exists() and not part.is_dir():
            raise OutputPathError(f"cannot write the {what} {p}: {part} is a file, not a folder")
    check_output_dir(p.parent, f"folder of the {what}")
    return p


def portable_path(path: str | os.PathLike | None) -> str | None:
    """``path`` as a record should keep it: relative to the working folder when it lies under
    it, else relative to the project (the folder holding the ``edgeeas`` package), else as
    given, except beside the project (a common parent other than the root), which is written
    relative to the project (``../shared/data/...``); never this machine's absolute prefix for
    files of the project or the run."""
    if path is None or str(path) == "":
        return None if path is None else ""
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix()
    project = Path(__file__).resolve().parents[1]
    for base in (Path.cwd(), project):
        for cand in (p, p.resolve()):
            try:
                return cand.relative_to(base.resolve() if cand is not p else base).as_posix()
            except ValueError:
                continue
    # beside the project (a shared data folder one level up): relative to the project, '../'
    real = p.resolve()
    if os.path.commonpath([real, project]) not in ("/", real.anchor):
        return Path(os.path.relpath(real, project)).as_posix()
    return p.as_posix()


def portable_source(source: str) -> str:
    """A dataset's ``source`` (``PATH`` or ``PATH --superclasses FILE``, :class:`edgeeas.data.Dataset`)
    with each path made :func:`portable_path`, for records (``args.yaml``)."""
    return " --superclasses ".join(portable_path(x) or "" for x in str(source).split(" --superclasses "))
