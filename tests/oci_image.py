"""Write a container image as an OCI image-layout tar, by hand, for `ctr images import`.

    write_image(Path("x.tar"), "docker.io/library/x:1", {"/bin/x": Path("/usr/bin/busybox")}, ["/bin/x"])

An image has one (uncompressed) layer made from `files`, a map of absolute paths in the image to what is
there: bytes (a file, mode 0644), a Path on this machine (a file with that file's mode and
content), or a File, Dir or Symlink (to give the mode, the owner uid and gid). Missing parent
directories are made root-owned 0755, and /tmp is made 1777 unless given. No registry is involved:
the name is carried in the index's `io.containerd.image.name` annotation.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Union

EPOCH = 0


@dataclass(frozen=True)
class File:
    content: bytes | Path
    mode: int = 0o644
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True)
class Dir:
    mode: int = 0o755
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True)
class Symlink:
    target: str


Entry = Union[bytes, Path, File, Dir, Symlink]


def normalize(name: str) -> str:
    """The full reference containerd and the kubelet use for an image name: `x:1` is
    docker.io/library/x:1, `a/x:1` is docker.io/a/x:1, and a name without a tag gets :latest."""
    first, _, rest = name.partition("/")
    if not rest:
        name = f"docker.io/library/{name}"
    elif "." not in first and ":" not in first and first != "localhost":
        name = f"docker.io/{name}"
    last = name.rsplit("/", 1)[-1]
    if ":" not in last and "@" not in last:
        name += ":latest"
    return name


def _entry(value: Entry) -> File | Dir | Symlink:
    if isinstance(value, (File, Dir, Symlink)):
        return value
    if isinstance(value, bytes):
        return File(value)
    if isinstance(value, Path):
        return File(value, value.stat().st_mode & 0o7777)
    raise TypeError(f"not an image entry: {value!r}")


def layer(files: dict[str, Entry]) -> bytes:
    """An uncompressed layer tar with `files` and the directories above them."""
    entries: dict[str, File | Dir | Symlink] = {}
    for path, value in files.items():
        pure = PurePosixPath("/") / path
        for parent in reversed(pure.parents):
            if str(parent) != "/":
                entries.setdefault(str(parent).lstrip("/"), Dir())
        entries[str(pure).lstrip("/")] = _entry(value)
    entries.setdefault("tmp", Dir(0o1777))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(entries):
            entry = entries[path]
            info = tarfile.TarInfo(path)
            info.mtime = EPOCH
            if isinstance(entry, Dir):
                info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, entry.mode, entry.uid, entry.gid
                tar.addfile(info)
            elif isinstance(entry, Symlink):
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, entry.target, 0o777
                tar.addfile(info)
            else:
                content = entry.content.read_bytes() if isinstance(entry.content, Path) else entry.content
                info.size, info.mode, info.uid, info.gid = len(content), entry.mode, entry.uid, entry.gid
                tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _blob(tar: tarfile.TarFile, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo(f"blobs/sha256/{digest}")
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))
    return f"sha256:{digest}"


def write_image(target: Path, name: str, files: dict[str, Entry], entrypoint: list[str], *,
                cmd: list[str] | None = None, user: str | None = None, env: dict[str, str] | None = None,
                workdir: str | None = None) -> str:
    """Write the OCI layout tar of an image named `name` to `target`; returns the full name."""
    full = normalize(name)
    raw = layer(files)
    environment = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", **(env or {})}
    config: dict = {"Entrypoint": entrypoint, "Env": [f"{k}={v}" for k, v in environment.items()]}
    if cmd is not None:
        config["Cmd"] = cmd
    if user is not None:
        config["User"] = user
    if workdir is not None:
        config["WorkingDir"] = workdir
    image_config = json.dumps({
        "architecture": "amd64", "os": "linux", "config": config,
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(raw).hexdigest()}"]},
        "history": [{"created_by": "tests/oci_image.py"}],
    }, sort_keys=True).encode()
    with tarfile.open(target, "w") as tar:
        layer_digest = _blob(tar, raw)
        config_digest = _blob(tar, image_config)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                       "size": len(image_config)},
            # Uncompressed: the tar never leaves this machine, and compressing a 100 MB layer takes seconds.
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest,
                        "size": len(raw)}],
        }, sort_keys=True).encode()
        manifest_digest = _blob(tar, manifest)
        index = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest,
                           "size": len(manifest), "platform": {"architecture": "amd64", "os": "linux"},
                           "annotations": {"io.containerd.image.name": full,
                                           "org.opencontainers.image.ref.name": full.rsplit(":", 1)[-1]}}],
        }, sort_keys=True).encode()
        for path, data in (("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", index)):
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return full
