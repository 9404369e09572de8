"""Helpers of the tests of tools/: run a tool in this process, load what it wrote."""
import importlib.util
import logging
import os

from detectron2.checkpoint import DetectionCheckpointer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_tool(name, *args):
    """Run the tool's command line (its main(argv)) in this process."""
    path = os.path.join(ROOT, "tools", name)
    spec = importlib.util.spec_from_file_location(name.replace("-", "_"), path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool.main([str(a) for a in args])


def load_reporting_incompatible(model, path):
    """Load with DetectionCheckpointer; return the names fvcore reports missing / unexpected
    (read from the loading logger, whatever logging setup the session has)."""
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("fvcore.common.checkpoint")
    logger.addHandler(handler)
    try:
        DetectionCheckpointer(model).load(str(path))
    finally:
        logger.removeHandler(handler)
    return [r.getMessage() for r in records if r.levelno >= logging.WARNING]
