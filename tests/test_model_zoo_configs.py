"""
Model-zoo compatibility: every published config merges to the published values, and the model
built from it has exactly the parameter and buffer names and shapes of the published checkpoint.

The reference (tests/data/model_zoo_reference/, see its README) lists, per config, each key that
differs from the defaults of Detectron2 + add_deeplab_config + add_maskformer2_config, and each
state_dict entry of the model.
"""
import ast
import os
import pickle

import pytest
import torch

import mask2former.data.datasets  # noqa: F401  registers the datasets the configs name
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.projects.deeplab import add_deeplab_config
from mask2former import add_maskformer2_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = os.path.join(ROOT, "tests", "data", "model_zoo_reference")
CONFIGS = sorted(
    f[: -len(".txt")]
    for f in os.listdir(os.path.join(REFERENCE, "configs"))
    if not f.startswith("_")
)


def config_path(name):
    return os.path.join(ROOT, "configs", name.replace("__", "/") + ".yaml")


def default_config():
    cfg = get_cfg()
    add_deeplab_config(cfg)
    add_maskformer2_config(cfg)
    return cfg


def load_config(name):
    cfg = default_config()
    cfg.merge_from_file(config_path(name))
    return cfg


def flatten(node, prefix=""):
    """CfgNode -> {"A.B.C": value} for every leaf."""
    out = {}
    for key, value in node.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def read_key_values(path):
    """Reference file of `KEY: python-literal` lines -> {key: value}."""
    values = {}
    with open(path) as f:
        for line in f:
            key, literal = line.rstrip("\n").split(": ", 1)
            values[key] = ast.literal_eval(literal)
    return values


def same(a, b):
    """Equal values of equal types, element by element (tuple != list, 1 != 1.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


# Keys of this project beyond the published ones, with their defaults (see mask2former/config.py).
PROJECT_KEYS = {
    "FLOAT32_MATMUL_PRECISION": "",
    "MODEL.MASK_FORMER.TEST.SEMANTIC_OUTPUT": "scores",
    "MODEL.MASK_FORMER.TEST.POSTPROCESS_AT_NETWORK_RESOLUTION": False,
    "MODEL.MASK_FORMER.TEST.POSTPROCESS_CHUNK_MB": 64,
    "MODEL.MASK_FORMER.TEST.PRECISION": "float32",
    "MODEL.MASK_FORMER.CLASS_HEAD_INIT.BY_NAME": False,
    "MODEL.MASK_FORMER.CLASS_HEAD_INIT.WEIGHTS_DATASET": "",
    "MODEL.MASK_FORMER.CLASS_HEAD_INIT.PAIRS": [],
    "DATASETS.FILE": "",
    "DATASETS.SKIP_INVALID_RECORDS": False,
    "SOLVER.EPOCHS": 0,
    "SOLVER.CHECKPOINT_PERIOD_MINUTES": 0.0,
}


def test_add_maskformer2_config_has_the_published_defaults():
    added = flatten(default_config())
    assert set(PROJECT_KEYS) <= set(added)
    cfg = get_cfg()
    add_deeplab_config(cfg)
    before = flatten(cfg)
    added = {k: v for k, v in added.items() if k not in before or not same(v, before[k])}
    assert {k: added.pop(k, None) for k in PROJECT_KEYS} == PROJECT_KEYS
    expected = read_key_values(os.path.join(REFERENCE, "configs", "_defaults.txt"))
    assert sorted(added) == sorted(expected)
    wrong = {k: (added[k], expected[k]) for k in expected if not same(added[k], expected[k])}
    assert not wrong, f"(ours, published) defaults differ: {wrong}"


def config_problems(merged, defaults, expected):
    """
    How a merged config (flat {key: value}) differs from the published one: ``expected`` holds
    the published keys whose values differ from ``defaults``. Returns a list of messages.
    """
    changed = {k: v for k, v in merged.items() if not same(v, defaults[k])}
    problems = [f"{k}: missing, still the default {merged[k]!r}, published {v!r}"
                for k, v in expected.items() if k not in changed]
    problems += [f"{k}: {v!r} is not published (default {defaults[k]!r})"
                 for k, v in changed.items() if k not in expected]
    problems += [f"{k}: {changed[k]!r}, published {v!r}"
                 for k, v in expected.items() if k in changed and not same(changed[k], v)]
    return problems


@pytest.mark.parametrize("name", CONFIGS)
def test_config_merges_to_the_published_values(name):
    expected = read_key_values(os.path.join(REFERENCE, "configs", name + ".txt"))
    problems = config_problems(flatten(load_config(name)), flatten(default_config()), expected)
    assert not problems, f"{config_path(name)}:\n" + "\n".join(problems)


def read_state_dict_keys(name, reference=REFERENCE):
    """Reference `name (shape)` lines -> [(name, shape)] in state_dict order."""
    entries = []
    with open(os.path.join(reference, "state_dict_keys", name + ".txt")) as f:
        for line in f:
            key, shape = line.rstrip("\n").split(" ", 1)
            entries.append((key, tuple(ast.literal_eval(shape))))
    return entries


@pytest.mark.parametrize("name", CONFIGS)
def test_model_has_the_published_state_dict(name):
    cfg = load_config(name)
    # Shapes only: build without allocating memory (Swin-L models have ~200M parameters).
    cfg.MODEL.DEVICE = "meta"
    with torch.device("meta"):
        model = build_model(cfg)
    ours = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    expected = read_state_dict_keys(name)
    ours_d, expected_d = dict(ours), dict(expected)
    missing = [k for k in expected_d if k not in ours_d]
    unexpected = [k for k in ours_d if k not in expected_d]
    shapes = [f"{k}: ours {ours_d[k]}, published {s}"
              for k, s in expected if k in ours_d and ours_d[k] != s]
    assert not (missing or unexpected or shapes), (
        f"{name}: missing {missing}\nunexpected {unexpected}\nshapes {shapes}"
    )
    order = [a for a, b in zip(ours, expected) if a[0] != b[0]]
    assert not order, f"{name}: state_dict order differs from the published one from {order[0][0]}"


def test_published_checkpoint_layout_loads_every_entry_by_name(tmp_path):
    """A .pkl in the model-zoo format with exactly the published names and shapes, each entry
    filled with its own index, loads through Detectron2's name matching into the right place."""
    name = "coco__panoptic-segmentation__swin__maskformer2_swin_tiny_bs16_50ep"
    cfg = load_config(name)
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    ours = model.state_dict()
    state = {
        key: torch.full(shape, i, dtype=ours[key].dtype if key in ours else torch.float32).numpy()
        for i, (key, shape) in enumerate(read_state_dict_keys(name))
    }
    path = tmp_path / "model_final.pkl"
    with open(path, "wb") as f:
        pickle.dump(
            {"model": state, "__author__": "published layout", "matching_heuristics": True}, f
        )
    DetectionCheckpointer(model).load(str(path))
    loaded = model.state_dict()
    wrong = [k for i, (k, _) in enumerate(read_state_dict_keys(name)) if not (loaded[k] == i).all()]
    assert not wrong, f"entries not loaded from their own name: {wrong}"
