"""
End-to-end CPU inference of Mask2Former by route, in one run: seconds per image and peak memory
of each route, and how closely each route's network outputs agree with float32 eager (native op).

Routes (``ROUTES``):
  native     float32, eager PyTorch, native MSDeformAttn op (the default way to run the model)
  pytorch    float32, eager PyTorch, MSDeformAttn in PyTorch (MASK2FORMER_MS_DEFORM_ATTN=pytorch)
  bfloat16   native op, MODEL.MASK_FORMER.TEST.PRECISION bfloat16 (opt-in reduced precision)
  compile    native op, ``torch.compile`` of the network (not run by default: it compiles for
             minutes; its compile time is reported)
  onnx       the model exported to ONNX (tools/deploy) and run by ONNX Runtime with the numpy
             post-processing of mask2former.deploy; exported in the process (setup time and
             peak memory include the PyTorch model and the export: benchmarks/bench_export.py
             measures a deployment without torch)

Each route runs in its own processes, so that its peak resident memory (getrusage maxrss, model
build included) is its own; the routes' processes alternate for ``--rounds`` rounds, so all see
the same machine load. A process builds the model (random weights from seed 0, or --opts
MODEL.WEIGHTS), runs one warm-up image, then times ``--images`` images, each a full call with
post-processing (``model([{"image": ...}])``, panoptic only by default). The images are random
(seeded) 3 x SIZE x SIZE, or the files given with --input. The first round's processes also
save the network outputs of the images (class logits, mask logits), from which the agreement of
each route with "native" is computed: the largest differences of class probabilities and mask
logits, the fraction of queries with the same top class, and the mean IoU of the binary masks
(logit > 0) over the queries.

    python benchmarks/bench_inference.py [--config-file configs/coco/panoptic-segmentation/\
maskformer2_R50_bs16_50ep.yaml] [--routes native pytorch bfloat16 onnx] [--size 512] [--images 5] \
[--rounds 2] [--threads 2] [--tasks panoptic] [--input a.jpg b.jpg] [--opts KEY VALUE ...]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = "configs/coco/panoptic-segmentation/maskformer2_R50_bs16_50ep.yaml"
TASK_KEYS = {
    "semantic": "MODEL.MASK_FORMER.TEST.SEMANTIC_ON",
    "instance": "MODEL.MASK_FORMER.TEST.INSTANCE_ON",
    "panoptic": "MODEL.MASK_FORMER.TEST.PANOPTIC_ON",
}


class EagerRoute:
    """Our model in eager PyTorch; the MSDeformAttn implementation follows the environment."""

    def __init__(self, cfg):
        import torch
        from detectron2.checkpoint import DetectionCheckpointer
        from detectron2.modeling import build_model

        torch.manual_seed(0)
        self.model = build_model(cfg).eval()
        if cfg.MODEL.WEIGHTS:
            DetectionCheckpointer(self.model).load(cfg.MODEL.WEIGHTS)

    def segment(self, image):
        """(3, H, W) uint8 image -> the model's results (post-processing included)."""
        return self.model([{"image": image}])

    def network(self, image):
        """(3, H, W) uint8 image -> (Q, K + 1) class logits, (Q, h, w) mask logits, float32."""
        from detectron2.structures import ImageList

        model = self.model
        normalized = (image.to(model.device).float() - model.pixel_mean) / model.pixel_std
        padded = ImageList.from_tensors([normalized], model.size_divisibility).tensor
        outputs = model.predict(padded)
        return outputs["pred_logits"][0], outputs["pred_masks"][0]


class CompiledRoute(EagerRoute):
    """:class:`EagerRoute` with the network (``MaskFormer.predict``) compiled by torch.compile."""

    def __init__(self, cfg):
        import torch

        super().__init__(cfg)
        self.model.predict = torch.compile(self.model.predict)


class OnnxRoute:
    """The model exported to ONNX and run by the deploy runner (ONNX Runtime + numpy)."""

    def __init__(self, cfg):
        import torch

        from mask2former.deploy import ExportedMask2Former
        from mask2former.export import build_deploy_info, export_model

        model = EagerRoute(cfg).model
        example = torch.randint(0, 256, (3, 512, 512), dtype=torch.uint8)
        info = build_deploy_info(cfg, model, "onnx", tuple(example.shape[-2:]))
        self._folder = tempfile.TemporaryDirectory()
        path = export_model(model, example, "onnx", self._folder.name, info)
        del model
        self.runner = ExportedMask2Former(path, num_threads=torch.get_num_threads())

    def segment(self, image):
        """(3, H, W) uint8 image -> the runner's numpy results (post-processing included)."""
        return self.runner.inference(image.numpy())

    def network(self, image):
        """(3, H, W) uint8 image -> (Q, K + 1) class logits, (Q, H, W) mask logits, float32."""
        import torch

        class_logits, mask_logits = self.runner.head_outputs(image.numpy())
        return torch.from_numpy(class_logits[0]), torch.from_numpy(mask_logits[0])


# name -> (environment, config options, route class). A route class is built from the config
# and has segment(image) (timed) and network(image) (compared with "native").
ROUTES = {
    "native": ({"MASK2FORMER_MS_DEFORM_ATTN": "native"}, [], EagerRoute),
    "pytorch": ({"MASK2FORMER_MS_DEFORM_ATTN": "pytorch"}, [], EagerRoute),
    "bfloat16": (
        {"MASK2FORMER_MS_DEFORM_ATTN": "native"},
        ["MODEL.MASK_FORMER.TEST.PRECISION", "bfloat16"],
        EagerRoute,
    ),
    "compile": ({"MASK2FORMER_MS_DEFORM_ATTN": "native"}, [], CompiledRoute),
    "onnx": ({}, [], OnnxRoute),
}
REFERENCE_ROUTE = "native"


def load_images(args):
    """The benchmark images: (3, H, W) uint8 tensors, one warm-up image first."""
    import torch

    if args.input:
        from detectron2.data.detection_utils import read_image

        images = [torch.from_numpy(read_image(path, format="BGR").copy()).permute(2, 0, 1)
                  for path in args.input]
        return [images[0]] + images[: args.images]
    generator = torch.Generator().manual_seed(0)
    return [torch.randint(0, 256, (3, args.size, args.size), dtype=torch.uint8,
                          generator=generator) for _ in range(args.images + 1)]


def measure(args):
    """Runs one route in this process; returns its timings and peak memory as a dict."""
    import resource

    import torch

    from mask2former.config import get_maskformer2_cfg

    torch.set_num_threads(args.threads)
    _, route_opts, route_class = ROUTES[args.route]
    tasks = [value for task, key in TASK_KEYS.items() for value in (key, task in args.tasks)]
    cfg = get_maskformer2_cfg(
        str(REPO_ROOT / args.config_file),
        ["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu", *tasks, *route_opts, *args.opts],
    )
    cfg.freeze()
    images = load_images(args)
    with torch.no_grad():
        start = time.perf_counter()
        route = route_class(cfg)
        route.segment(images[0])  # warm-up (and compilation)
        setup_seconds = time.perf_counter() - start
        times = []
        for image in images[1:]:
            start = time.perf_counter()
            route.segment(image)
            times.append(time.perf_counter() - start)
        peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if args.save_outputs:
            outputs = [route.network(image) for image in images[1:]]
            torch.save(outputs, args.save_outputs)
    return {"seconds_per_image": times, "peak_rss_mib": peak_rss_mib,
            "setup_seconds": setup_seconds}


def run_child(route, args, save_outputs=None):
    env = {**os.environ, **ROUTES[route][0]}
    command = [sys.executable, __file__, "--child", "--route", route,
               "--config-file", args.config_file, "--size", str(args.size),
               "--images", str(args.images), "--threads", str(args.threads),
               "--tasks", *args.tasks]
    if args.input:
        command += ["--input", *args.input]
    if save_outputs:
        command += ["--save-outputs", save_outputs]
    command += ["--opts", *args.opts]
    result = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"route {route} failed:\n{result.stdout}\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def agreement(reference_file, route_file):
    """Agreement of a route's network outputs with the reference route's, over all images."""
    import torch
    import torch.nn.functional as F

    probability_diff = logit_diff = 0.0
    same_class, ious = [], []
    for (ref_logits, ref_masks), (logits, masks) in zip(
        torch.load(reference_file), torch.load(route_file)
    ):
        if masks.shape[-1] > ref_masks.shape[-1]:
            # Masks at the image's size (onnx): the reference's, resized as the exported graph
            # resizes them (from the padded size; random images need no padding).
            ref_masks = F.interpolate(ref_masks[None], size=masks.shape[-2:], mode="bilinear",
                                      align_corners=False)[0]
        elif masks.shape != ref_masks.shape:
            masks = F.interpolate(masks[None], size=ref_masks.shape[-2:], mode="bilinear",
                                  align_corners=False)[0]
        probability_diff = max(probability_diff, float(
            (logits.softmax(-1) - ref_logits.softmax(-1)).abs().max()))
        logit_diff = max(logit_diff, float((masks - ref_masks).abs().max()))
        same_class.append(logits.argmax(-1) == ref_logits.argmax(-1))
        binary, ref_binary = masks > 0, ref_masks > 0
        union = (binary | ref_binary).flatten(1).sum(1)
        intersection = (binary & ref_binary).flatten(1).sum(1)
        ious.append(intersection[union > 0] / union[union > 0])
    return {
        "max_class_probability_diff": probability_diff,
        "max_mask_logit_diff": logit_diff,
        "same_top_class": float(torch.cat(same_class).float().mean()),
        "mean_mask_iou": float(torch.cat(ious).mean()),
    }


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", default=DEFAULT_CONFIG)
    parser.add_argument("--routes", nargs="+", default=["native", "pytorch", "bfloat16"],
                        choices=list(ROUTES))
    parser.add_argument("--size", type=int, default=512, help="random image height and width")
    parser.add_argument("--input", nargs="+", help="image files instead of random images")
    parser.add_argument("--images", type=int, default=5, help="timed images per process")
    parser.add_argument("--rounds", type=int, default=2, help="processes per route")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--tasks", nargs="+", default=["panoptic"], choices=list(TASK_KEYS))
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[],
                        help="config options KEY VALUE ... for every route (last argument)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--route", help=argparse.SUPPRESS)
    parser.add_argument("--save-outputs", help=argparse.SUPPRESS)
    return parser.parse_args()


def main():
    args = parse_args()
    if args.child:
        print(json.dumps(measure(args)))
        return
    routes = list(dict.fromkeys([REFERENCE_ROUTE, *args.routes]))
    results = {name: [] for name in routes}
    with tempfile.TemporaryDirectory() as tmp:
        outputs = {name: os.path.join(tmp, f"{name}.pt") for name in routes}
        for round_index in range(args.rounds):
            for name in routes:
                save = outputs[name] if round_index == 0 else None
                results[name].append(run_child(name, args, save))
        agreements = {name: agreement(outputs[REFERENCE_ROUTE], outputs[name])
                      for name in routes if name != REFERENCE_ROUTE}

    source = f"{len(args.input)} files" if args.input else f"random {args.size}x{args.size}"
    print(f"{args.config_file}, {source} images, tasks {'+'.join(args.tasks)}, CPU, "
          f"{args.threads} threads, {args.rounds} x {args.images} images per route "
          "(alternating processes)")
    print(f"{'route':<10}{'s / image':>11}{'vs native':>11}{'peak RSS MiB':>14}{'setup s':>9}")
    medians = {name: statistics.median(t for run in runs for t in run["seconds_per_image"])
               for name, runs in results.items()}
    for name, runs in results.items():
        peak = max(run["peak_rss_mib"] for run in runs)
        setup = statistics.median(run["setup_seconds"] for run in runs)
        print(f"{name:<10}{medians[name]:>11.3f}{medians[REFERENCE_ROUTE] / medians[name]:>10.2f}x"
              f"{peak:>14.0f}{setup:>9.1f}")
    print(f"agreement of the network outputs with {REFERENCE_ROUTE} (same images):")
    print(f"{'route':<10}{'max |dp class|':>16}{'max |d mask logit|':>20}{'same top class':>16}"
          f"{'mean mask IoU':>15}")
    for name, values in agreements.items():
        print(f"{name:<10}{values['max_class_probability_diff']:>16.2e}"
              f"{values['max_mask_logit_diff']:>20.2e}{values['same_top_class']:>16.4f}"
              f"{values['mean_mask_iou']:>15.4f}")


if __name__ == "__main__":
    main()
