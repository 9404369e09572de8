#!/usr/bin/env python
"""
Write the generated shapes dataset in the annotation formats a dataset file reads, each with
its dataset YAML (mask2former/data/datasets/shapes_formats.py):

    python tools/write_shapes_formats.py [--output datasets/generated/shapes_formats]
        [--formats labelme yolo ...] [--shapes-root datasets/generated/shapes]
        [--num-train 2000] [--num-val 100]

The shapes dataset is generated first when it is not on disk (as tools/main_job.py does, in
$DETECTRON2_DATASETS/generated/shapes), with --num-train and --num-val images. A small dataset
for a quick try takes a --shapes-root of its own, e.g. --shapes-root output/small_shapes
--num-train 24 --num-val 8 (seconds; its images are the first ones of the full dataset, each
image being generated from the seed and its index); other sizes at the main job's root would
regenerate the main job's dataset at those sizes. Prints the path of each dataset YAML, e.g. for
``train_net.py --config-file configs/custom/panoptic-segmentation/maskformer2_R18.yaml
--dataset datasets/generated/shapes_formats/labelme/labelme.yaml``.
"""
import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mask2former.data.datasets.generated_shapes import (  # noqa: E402
    default_shapes_root,
    generate_shapes_dataset,
)
from mask2former.data.datasets.shapes_formats import (  # noqa: E402
    SHAPES_FORMATS,
    write_shapes_formats,
)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes-root", default=default_shapes_root(),
                        help="the generated shapes dataset (generated here when missing)")
    parser.add_argument("--output", default=os.path.join(
        os.getenv("DETECTRON2_DATASETS", "datasets"), "generated", "shapes_formats"))
    parser.add_argument("--formats", nargs="+", choices=SHAPES_FORMATS, default=SHAPES_FORMATS)
    parser.add_argument("--num-train", type=int, default=2000)
    parser.add_argument("--num-val", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    generate_shapes_dataset(args.shapes_root, seed=args.seed, num_train=args.num_train,
                            num_val=args.num_val)
    for fmt, path in write_shapes_formats(args.shapes_root, args.output, args.formats).items():
        print(f"{fmt:<22} {path}")


if __name__ == "__main__":
    main()
