"""
Checkpoint saving that never leaves a damaged or NaN checkpoint in place of a good one.

fvcore's ``Checkpointer.save`` streams ``torch.save`` straight into ``<name>.pth`` and then
rewrites ``last_checkpoint`` in place (truncate, then write): a process killed mid-way leaves a
truncated ``.pth`` or an empty ``last_checkpoint``, and ``--resume`` then fails or, worse, loads
nothing. :class:`AtomicCheckpointer` writes each file to a temporary file in the same folder,
flushes it to disk and renames it over the target (``os.replace``, atomic on POSIX file
systems): a reader sees the old file or the complete new one, never a part.
"""
import os

import torch

from mask2former.checkpoint import MaskFormerCheckpointer

__all__ = ["AtomicCheckpointer", "atomic_write"]


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


class AtomicCheckpointer(MaskFormerCheckpointer):
    """
    :class:`~mask2former.checkpoint.MaskFormerCheckpointer` (same arguments and loading) whose
    ``save`` is atomic (see the module docstring), refuses to save non-finite model weights,
    and whose loading names the file and the way out when a checkpoint cannot be read.
    ``save_dir`` must be a local folder.
    """

    def save(self, name, **kwargs):
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        save_file = os.path.join(self.save_dir, f"{name}.pth")
        bad = [k for k, v in data["model"].items()
               if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            raise FloatingPointError(
                f"Not saving checkpoint {save_file}: {len(bad)} model parameters/buffers hold NaN "
                f"or Inf ({', '.join(bad[:5])}{', ...' if len(bad) > 5 else ''}); the last "
                f"good checkpoint ({self.get_checkpoint_file() or 'none'}) is kept."
            )
        self.logger.info(f"Saving checkpoint to {save_file}")
        atomic_write(save_file, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(os.path.basename(save_file))

    def tag_last_checkpoint(self, last_filename_basename):
        atomic_write(os.path.join(self.save_dir, "last_checkpoint"),
                     lambda f: f.write(last_filename_basename.encode()))

    def _load_file(self, filename):
        try:
            return super()._load_file(filename)
        except Exception as e:
            last = os.path.join(self.save_dir or "<OUTPUT_DIR>", "last_checkpoint")
            others = sorted(f for f in os.listdir(os.path.dirname(os.path.abspath(filename)))
                            if f.endswith((".pth", ".pkl")) and f != os.path.basename(filename))
            raise RuntimeError(
                f"Cannot read checkpoint {filename}: {type(e).__name__}: {e}. If the file is "
                "damaged or incomplete, replace it, or to resume from another checkpoint write "
                f"its file name into {last} (checkpoints beside it: {', '.join(others) or 'none'})."
            ) from e
