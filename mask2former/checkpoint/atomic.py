"""
Files written whole or not at all.

fvcore's ``Checkpointer.save`` streams ``torch.save`` straight into ``<name>.pth`` and then
rewrites ``last_checkpoint`` in place (truncate, then write): a process killed mid-way leaves a
truncated ``.pth`` or an empty ``last_checkpoint``, and ``--resume`` then fails or, worse, loads
nothing. :func:`atomic_write` writes a file to a temporary file in the same folder, flushes it to
disk and renames it over the target (``os.replace``, atomic on POSIX file systems): a reader sees
the old file or the complete new one, never a part.
"""
import os

__all__ = ["atomic_write"]


def atomic_write(path, write):
    """
    Create or replace the file ``path`` with what ``write(f)`` writes to a binary file ``f``,
    atomically: on any failure (or a kill) before the end, ``path`` is unchanged.
    """
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    dir_fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)
