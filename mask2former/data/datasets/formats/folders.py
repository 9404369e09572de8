"""Pairing image files with annotation files of the same relative path and name."""
import os

__all__ = ["IMAGE_EXTENSIONS", "files_by_stem", "image_files", "walk_files"]

# Image files the folder formats pick up (case-insensitive).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def walk_files(folder):
    """
    Paths of the files under ``folder``, recursively, sorted; hidden folders (".name", e.g. the
    derived files of a dataset file, ".mask2former") are left out.
    """
    for directory, subdirs, names in os.walk(folder):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        for name in sorted(names):
            yield os.path.join(directory, name)


def files_by_stem(folder, extensions):
    """
    Files under ``folder`` (see :func:`walk_files`) whose extension is in ``extensions``, keyed
    by their path relative to ``folder`` without the extension ("sub/000001").
    """
    found = {}
    for path in walk_files(folder):
        stem, ext = os.path.splitext(path)
        if ext.lower() in extensions:
            found.setdefault(os.path.relpath(stem, folder), path)
    return found


def image_files(folder):
    """Image files under ``folder`` keyed by relative path without extension."""
    return files_by_stem(folder, IMAGE_EXTENSIONS)
