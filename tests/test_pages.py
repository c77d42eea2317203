"""The pages' files: vendored libraries as their packages ship them, with licences."""

from __future__ import annotations

import hashlib

from payql.pages import STATIC

VENDOR = STATIC / "vendor"


def test_vendored_files_are_the_pinned_ones_each_with_its_licence() -> None:
    # given the checksums fetch.sh recorded when it took the files from npm
    pinned = {}
    for line in (VENDOR / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        pinned[name.removeprefix("./")] = digest
    # then every vendored file is listed and unchanged, and nothing is unlisted
    present = {
        str(path.relative_to(VENDOR))
        for path in VENDOR.rglob("*")
        if path.is_file() and path.name not in ("SHA256SUMS", "fetch.sh")
    }
    assert present == set(pinned)
    for name, digest in pinned.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name
    # and each package directory carries its licence
    for package in (p for p in VENDOR.iterdir() if p.is_dir()):
        assert (package / "LICENSE").is_file(), package.name
