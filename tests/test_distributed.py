"""
Distributed training and evaluation on CPUs: train_net.py --num-gpus 2 starts two Gloo worker
processes (loopback only) that train and evaluate exactly like one process on the same total
batch, and the set criterion normalizes the mask losses by the number of masks of all workers.

Randomness: the data stream seeds each sample's augmentation by its stream position, so both
runs see the same augmented images. The mask losses and the matcher's mask costs read the masks
at random points drawn from each process's own generator, which a 2-process run cannot share
with a 1-process run; the training equivalence is therefore shown with the mask and dice loss
weights at 0 (classification losses only, no random point in any gradient), and the mask loss
normalization with a direct two-process test of the criterion, each worker seeded like the
single-process reference that it is compared to.
"""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.projects.deeplab import add_deeplab_config
from detectron2.utils import comm

from mask2former import add_maskformer2_config
from mask2former.data.datasets.generated_shapes import generate_shapes_dataset
from mask2former.engine import launch
from mask2former.modeling.criterion import SetCriterion
from mask2former.modeling.matcher import HungarianMatcher

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "shapes" / "maskformer2_R18_shapes.yaml"
# Batch 2 on 64 px images, 2 SGD steps; SyncBN in the backbone (NaiveSyncBatchNorm on CPU, the
# statistics of the whole batch in both runs). Mask / dice weights 0 and "no object" weight 1:
# the classification loss is then a plain mean over queries, so the mean of the per-worker
# losses equals the loss of the whole batch, and no randomly sampled point enters a gradient.
TINY = [
    "SEED", "7", "SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "2",
    "SOLVER.WARMUP_ITERS", "0", "SOLVER.OPTIMIZER", "SGD", "SOLVER.BASE_LR", "0.05",
    "INPUT.IMAGE_SIZE", "64", "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "64",
    "MODEL.RESNETS.NORM", "SyncBN", "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", "8",
    "MODEL.MASK_FORMER.TRAIN_NUM_POINTS", "256", "MODEL.MASK_FORMER.MASK_WEIGHT", "0.0",
    "MODEL.MASK_FORMER.DICE_WEIGHT", "0.0", "MODEL.MASK_FORMER.NO_OBJECT_WEIGHT", "1.0",
    "DATALOADER.NUM_WORKERS", "0",
]
# Evaluation outputs whose thresholds keep some segments of a barely trained model.
EVAL = ["MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD", "0.0"]


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _loopback_env(monkeypatch=None, **extra):
    """CPU only, Gloo on the loopback interface, one thread per process (2 cores)."""
    env = {"CUDA_VISIBLE_DEVICES": "", "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    env.update(extra)
    if monkeypatch is not None:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
    return dict(os.environ, **env)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """
    The same training from the same initial weights in 1 process and in 2 processes, and an
    --eval-only run of the 1-process run's final weights on 2 machines (1 process each) that
    must reproduce its final evaluation (Detectron2's TEST.EXPECTED_RESULTS check fails the
    run otherwise).
    """
    root = tmp_path_factory.mktemp("distributed")
    generate_shapes_dataset(str(root / "datasets" / "generated" / "shapes"), seed=0,
                            num_train=4, num_val=4, size=64)
    env = _loopback_env(DETECTRON2_DATASETS=str(root / "datasets"))
    init = root / "init.pth"
    _save_initial_weights(init)

    one = _train_net(root, env, "one", 1, ["MODEL.WEIGHTS", str(init)] + EVAL)
    # The 2-process run skips the slow panoptic evaluation (checked by the eval-only run).
    two = _train_net(root, env, "two", 2, ["MODEL.WEIGHTS", str(init),
                                           "MODEL.MASK_FORMER.TEST.PANOPTIC_ON", "False"])
    final_metrics = json.loads((one / "metrics.json").read_text().splitlines()[-1])
    expected = [
        [task, name, value, 1e-6]
        for task_name, value in final_metrics.items() if "/" in task_name
        for task, name in [task_name.split("/", 1)]
        if value == value  # NaN metrics (no object of a size range) cannot be verified
    ]
    # Evaluated by 2 "machines" of 1 process each: --num-machines / --machine-rank.
    evaluated = _train_net(root, env, "eval", 1, [
        "--eval-only", "MODEL.WEIGHTS", str(one / "model_final.pth"),
        "TEST.EXPECTED_RESULTS", repr(expected)] + EVAL, num_machines=2)
    return {"init": init, "one": one, "two": two, "eval": evaluated, "expected": expected}


def _save_initial_weights(path):
    """Random initial weights of the TINY model, as a Detectron2 checkpoint file."""
    cfg = get_cfg()
    add_deeplab_config(cfg)
    add_maskformer2_config(cfg)
    cfg.merge_from_file(str(CONFIG))
    cfg.merge_from_list(TINY)
    cfg.MODEL.DEVICE = "cpu"
    with torch.random.fork_rng():
        torch.manual_seed(0)
        torch.save({"model": build_model(cfg).state_dict()}, path)


def _train_net(root, env, name, num_processes, opts, num_machines=1):
    """
    Run train_net.py with TINY + ``opts`` into ``root/name`` with ``num_processes`` per
    machine; ``num_machines`` > 1 starts one train_net.py per "machine" (all on 127.0.0.1),
    as on a cluster. Returns the output folder.
    """
    output = root / name
    flags = [a for a in opts if a.startswith("--")]
    opts = [a for a in opts if not a.startswith("--")]
    dist_url = f"tcp://127.0.0.1:{_free_port()}"
    procs = []
    for machine_rank in range(num_machines):
        cmd = [sys.executable, str(REPO / "train_net.py"), "--config-file", str(CONFIG),
               *flags, "--num-gpus", str(num_processes), "--num-machines", str(num_machines),
               "--machine-rank", str(machine_rank), "--dist-url", dist_url,
               *TINY, *opts, "OUTPUT_DIR", str(output)]
        log = open(root / f"{name}.machine{machine_rank}.log", "w+")
        procs.append((cmd, log, subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log,
                                                 stderr=subprocess.STDOUT)))
    for cmd, log, proc in procs:
        returncode = proc.wait(timeout=300)
        log.seek(0)
        assert returncode == 0, f"{' '.join(cmd)} failed:\n{log.read()[-6000:]}"
        log.close()
    return output


def _model(path):
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


def test_two_cpu_processes_train_like_one_process(runs):
    one, two = runs["one"], runs["two"]
    losses = [json.loads((run / "metrics.json").read_text().splitlines()[0]) for run in (one, two)]
    loss_names = [k for k in losses[0] if k.startswith("loss_ce")]
    assert len(loss_names) == 4  # final prediction + 3 auxiliary ones
    for name in loss_names:
        assert losses[1][name] == pytest.approx(losses[0][name], rel=1e-5), name

    init = _model(runs["init"])
    w1, w2 = _model(one / "model_final.pth"), _model(two / "model_final.pth")
    assert w1.keys() == w2.keys()
    largest_update = max((w1[k].float() - init[k].float()).abs().max().item() for k in init
                         if init[k].is_floating_point() and init[k].numel())
    assert largest_update > 1e-3
    for key in w1:
        # NaiveSyncBatchNorm's multi-process path keeps the biased batch variance in
        # running_var and leaves num_batches_tracked; BatchNorm2d's keeps the unbiased one.
        if key.endswith(("running_var", "num_batches_tracked")):
            continue
        torch.testing.assert_close(w2[key], w1[key], rtol=1e-4, atol=1e-5, msg=key)


def test_only_the_main_process_writes_outputs(runs):
    one, two = runs["one"], runs["two"]
    assert len((two / "metrics.json").read_text().splitlines()) == len(
        (one / "metrics.json").read_text().splitlines())
    assert len(list(two.glob("events.out.tfevents.*"))) == 1
    assert sorted(p.name for p in two.glob("model_*.pth")) == ["model_final.pth"]
    # Every worker logs, rank > 0 into its own file (Detectron2's setup_logger).
    assert (two / "log.txt").exists() and (two / "log.txt.rank1").exists()
    assert "NaiveSyncBatchNorm" in (two / "log.txt").read_text()


def test_two_process_evaluation_gathers_all_images(runs):
    # The eval-only run exits non-zero unless its metrics equal the 1-process ones.
    assert "Results verification passed" in (runs["eval"] / "log.txt").read_text()
    assert "Rank of current process: 1. World size: 2" in (
        runs["eval"] / "log.txt.rank1").read_text()
    names = {(task, name) for task, name, _, _ in runs["expected"]}
    assert {("sem_seg", "mIoU"), ("panoptic_seg", "PQ"), ("segm", "AP")} <= names
    one, evaluated = runs["one"] / "inference", runs["eval"] / "inference"
    for file_name in ("coco_instances_results.json", "sem_seg_predictions.json"):
        predictions = json.loads((evaluated / file_name).read_text())
        assert predictions == json.loads((one / file_name).read_text()), file_name
    instances = json.loads((evaluated / "coco_instances_results.json").read_text())
    assert {p["image_id"] for p in instances} == {1, 2, 3, 4}


# ------------------------------------------------------------------------ criterion, 2 workers
K, Q, H, W = 3, 5, 12, 12
MASKS_PER_IMAGE = (1, 4)  # unequal, so per-worker and global normalizers differ


def _criterion():
    weight_dict = {"loss_ce": 2.0, "loss_mask": 5.0, "loss_dice": 5.0}
    weight_dict.update({f"{k}_0": v for k, v in list(weight_dict.items())})
    return SetCriterion(K, HungarianMatcher(2.0, 5.0, 5.0, num_points=32), weight_dict, 0.1,
                        ["labels", "masks"], num_points=32, oversample_ratio=3.0,
                        importance_sample_ratio=0.75)


def _image_batch(index):
    """Outputs (with one auxiliary prediction) and targets of image ``index`` alone."""
    generator = torch.Generator().manual_seed(index)

    def prediction():
        return {"pred_logits": torch.randn(1, Q, K + 1, generator=generator),
                "pred_masks": torch.randn(1, Q, H, W, generator=generator)}

    outputs = dict(prediction(), aux_outputs=[prediction()])
    n = MASKS_PER_IMAGE[index]
    targets = [{"labels": torch.randint(0, K, (n,), generator=generator),
                "masks": torch.rand(n, H, W, generator=generator) > 0.5}]
    return outputs, targets


def _losses_of_image(index):
    """The criterion's losses on image ``index``, point sampling seeded by the index."""
    with torch.random.fork_rng():
        torch.manual_seed(100 + index)
        return {k: v.item() for k, v in _criterion()(*_image_batch(index)).items()}


def _criterion_worker(out_dir):
    """Worker r of 2: the losses of image r, normalized over both workers' masks."""
    torch.save(_losses_of_image(comm.get_rank()), Path(out_dir) / f"rank{comm.get_rank()}.pth")


@pytest.mark.skipif(torch.cuda.is_available(), reason="launches CPU (Gloo) workers")
def test_mask_losses_are_normalized_by_the_masks_of_all_workers(tmp_path, monkeypatch):
    _loopback_env(monkeypatch)
    launch(_criterion_worker, 2, dist_url=f"tcp://127.0.0.1:{_free_port()}",
           args=(str(tmp_path),))
    mean_masks = sum(MASKS_PER_IMAGE) / len(MASKS_PER_IMAGE)
    for rank, n in enumerate(MASKS_PER_IMAGE):
        distributed = torch.load(tmp_path / f"rank{rank}.pth")
        alone = _losses_of_image(rank)  # 1 process: normalized by this image's n masks
        assert distributed.keys() == alone.keys()
        for name, value in alone.items():
            scale = n / mean_masks if name.startswith(("loss_mask", "loss_dice")) else 1.0
            assert distributed[name] == pytest.approx(value * scale, rel=1e-5), (rank, name)
