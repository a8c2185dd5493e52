"""Zip archives read in memory, bounded (members, unpacked bytes, inflated bytes): the Batch page, the study
upload, the batch CLI and the Ray path share this reader."""

from __future__ import annotations

from pathlib import Path

from core.errors import CorruptImageError, ImageTooLargeError, ScanSightError
from core.io.image import MAX_FILE_BYTES

MAX_ZIP_MEMBERS = 1000

#: What a whole archive may unpack to: the same as one file (a zip is no way around the upload limit).
MAX_ZIP_BYTES = MAX_FILE_BYTES

ZIP_CHUNK = 1024 * 1024


class ZipMemberError(ScanSightError):
    """One member of an archive cannot be read (encrypted, damaged, or larger than it declares)."""


def unzip_in_memory(data: bytes) -> list[tuple[str, bytes | ScanSightError]]:
    """Members of a zip archive, read in memory, bounded: at most `MAX_ZIP_MEMBERS` files and `MAX_ZIP_BYTES`
    unpacked in all, by the declared sizes first and then by the bytes actually inflated (read in 1 MB chunks,
    so a member that lies about its size is stopped at the limit). A member that cannot be read comes back
    as its error, and the others go on."""
    import io
    import zipfile

    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = [m for m in archive.infolist() if not m.is_dir() and not Path(m.filename).name.startswith(".")]
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, RuntimeError) as error:
        raise CorruptImageError(f"The zip archive could not be read ({error}).") from None
    if len(members) > MAX_ZIP_MEMBERS:
        raise ImageTooLargeError(f"The archive holds {len(members)} files; ScanSight reads up to {MAX_ZIP_MEMBERS}.")
    declared = sum(m.file_size for m in members)
    if declared > MAX_ZIP_BYTES:
        raise ImageTooLargeError(
            f"The archive unpacks to {declared / 1e6:.0f} MB; ScanSight reads up to {MAX_ZIP_BYTES / 1e6:.0f} MB "
            "in all: split it into smaller ones."
        )
    out: list[tuple[str, bytes | ScanSightError]] = []
    budget = MAX_ZIP_BYTES
    for member in sorted(members, key=lambda m: m.filename):
        if member.flag_bits & 0x1:
            out.append(
                (member.filename, ZipMemberError("This file in the archive is encrypted; ScanSight cannot read it."))
            )
            continue
        try:
            content = read_member(archive, member, min(member.file_size, budget))
        except ZipMemberError as error:
            out.append((member.filename, error))
            continue
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError, RuntimeError) as error:
            out.append(
                (member.filename, ZipMemberError(f"This file in the archive is damaged ({type(error).__name__})."))
            )
            continue
        budget -= len(content)
        out.append((member.filename, content))
    return out


def read_member(archive, member, limit: int) -> bytes:
    """A member's bytes, read in chunks; refused as soon as it inflates past its declared size or `limit`."""
    parts, size = [], 0
    with archive.open(member) as handle:
        while chunk := handle.read(ZIP_CHUNK):
            size += len(chunk)
            if size > limit:
                raise ZipMemberError(
                    "This file in the archive unpacks to more than it declares, or past the archive's limit "
                    f"({MAX_ZIP_BYTES / 1e6:.0f} MB in all)."
                )
            parts.append(chunk)
    return b"".join(parts)
