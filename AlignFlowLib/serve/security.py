"""What the browser may reach on the server: folders under one root, checked uploads, a token off localhost.

The page only ever sends paths relative to the served root. Each is resolved with symlinks followed and must still
lie under the root, so neither `..` nor a link that points elsewhere gets out. Uploads are written under the root's
`uploads/` folder with a name the server makes, after their size and their first bytes were checked, so a file
named `x.png` that is not a PNG is refused before anything reads it.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from pathlib import Path, PurePosixPath

from ..errors import AlignFlowError, UsageError

# The same as data.io's; repeated so that the page starts without the data package, which imports torch.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
VOLUME_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")
DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024
UPLOADS = "uploads"

_MAGIC = {
    ".png": (b"\x89PNG\r\n\x1a\n",),
    ".jpg": (b"\xff\xd8\xff",),
    ".jpeg": (b"\xff\xd8\xff",),
    ".tif": (b"II*\x00", b"MM\x00*"),
    ".tiff": (b"II*\x00", b"MM\x00*"),
    ".bmp": (b"BM",),
}


class AccessError(AlignFlowError):
    """A path or upload the page may not use; the message is shown on the page as it is."""

    exit_code = 2


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach ("localhost", 127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen beyond this machine without a token: anyone who reaches the port could start GPU jobs and
    read the served folders."""
    if not is_loopback(host) and not token:
        raise UsageError(f"--host {host} makes the page reachable from other machines; give --token (or "
                         "ALIGNFLOW_TOKEN), or keep the default 127.0.0.1 and use an SSH tunnel")
    if token is not None and len(token) < 16:
        raise UsageError("--token must be at least 16 characters (e.g. from `python -c 'import secrets; "
                         "print(secrets.token_urlsafe(24))'`)")


def new_token() -> str:
    return secrets.token_urlsafe(24)


class ServedRoot:
    """The one folder tree the page may browse, read and write into."""

    def __init__(self, root: Path):
        root = Path(root)
        if not root.is_dir():
            raise UsageError(f"{root}: --root must be an existing folder")
        self.root = root.resolve()

    def resolve(self, relative: str) -> Path:
        """A page-supplied path → an absolute path under the root, or AccessError (absolute paths, `..`, and
        symlinks that lead outside are all refused)."""
        text = str(relative).strip().replace("\\", "/")
        if text in ("", "."):
            return self.root
        pure = PurePosixPath(text)
        if pure.is_absolute() or re.match(r"^[A-Za-z]:", text) or ".." in pure.parts:
            raise AccessError(f"{text}: only folders under the served root can be used")
        candidate = (self.root / pure).resolve()
        if candidate != self.root and self.root not in candidate.parents:
            raise AccessError(f"{text}: leads outside the served root")
        return candidate

    def relative(self, path: Path) -> str:
        return Path(path).resolve().relative_to(self.root).as_posix()

    def folders(self, max_depth: int = 3) -> list[str]:
        """Folders under the root (hidden ones and links that leave the root left out), as relative paths."""
        found: list[str] = []

        def walk(folder: Path, depth: int) -> None:
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError:
                return
            for entry in entries:
                if entry.name.startswith(".") or not entry.is_dir():
                    continue
                try:
                    path = self.resolve(Path(entry.path).relative_to(self.root).as_posix())
                except AccessError:
                    continue
                found.append(self.relative(path))
                if depth < max_depth and not entry.is_symlink():
                    walk(Path(entry.path), depth + 1)

        walk(self.root, 1)
        return found

    def files(self, suffixes: tuple[str, ...], max_depth: int = 3, folders: list[str] | None = None) -> list[str]:
        """Files under the root whose names end in one of `suffixes` (lower case), as relative paths; `folders`
        (from `folders()`) saves walking the tree again."""
        found = []
        for folder in [""] + (self.folders(max_depth) if folders is None else folders):
            base = self.resolve(folder)
            try:
                entries = sorted(os.scandir(base), key=lambda e: e.name)
            except OSError:
                continue
            for entry in entries:
                if entry.is_file() and entry.name.lower().endswith(suffixes) and not entry.name.startswith("."):
                    try:
                        found.append(self.relative(self.resolve(f"{folder}/{entry.name}".lstrip("/"))))
                    except AccessError:
                        continue
        return found


def check_upload(name: str, data: bytes, max_bytes: int = DEFAULT_MAX_UPLOAD_BYTES) -> str:
    """A safe file name for an uploaded reference image, or AccessError: too large, empty, not an image type, or
    content that is not what its name says."""
    base = PurePosixPath(str(name).replace("\\", "/")).name
    stem, suffix = os.path.splitext(base)
    suffix = suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise AccessError(f"{base}: not an image the references can hold (use {', '.join(IMAGE_SUFFIXES)})")
    if len(data) > max_bytes:
        raise AccessError(f"{base}: {len(data) / 1e6:.1f} MB is more than the {max_bytes / 1e6:.1f} MB upload limit")
    if not data:
        raise AccessError(f"{base}: the file is empty")
    if not any(data.startswith(magic) for magic in _MAGIC[suffix]):
        raise AccessError(f"{base}: the content is not a {suffix[1:].upper()} file")
    safe_stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._") or "reference"
    return safe_stem[:80] + suffix
