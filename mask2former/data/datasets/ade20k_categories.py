"""
The 150 classes of the ADE20K scene-parsing benchmark (ADEChallengeData2016, objectInfo150),
in label order, with the colors of the benchmark's palette and whether the class is a
"thing" (one of the 100 classes of the ADE20K instance-segmentation annotations) or "stuff".

Label ``k`` (1..150) of ``annotations/*.png`` is entry ``k - 1`` here; instances of the
``annotations_instance/*.png`` files are read by :func:`ade20k_instances`.
"""
import numpy as np

# (name, color, isthing)
_ADE20K_150 = [
    ("wall", (120, 120, 120), 0),
    ("building", (180, 120, 120), 0),
    ("sky", (6, 230, 230), 0),
    ("floor", (80, 50, 50), 0),
    ("tree", (4, 200, 3), 0),
    ("ceiling", (120, 120, 80), 0),
    ("road, route", (140, 140, 140), 0),
    ("bed", (204, 5, 255), 1),
    ("window", (230, 230, 230), 1),
    ("grass", (4, 250, 7), 0),
    ("cabinet", (224, 5, 255), 1),
    ("sidewalk, pavement", (235, 255, 7), 0),
    ("person", (150, 5, 61), 1),
    ("earth, ground", (120, 120, 70), 0),
    ("door", (8, 255, 51), 1),
    ("table", (255, 6, 82), 1),
    ("mountain, mount", (143, 255, 140), 0),
    ("plant", (204, 255, 4), 0),
    ("curtain", (255, 51, 7), 1),
    ("chair", (204, 70, 3), 1),
    ("car", (0, 102, 200), 1),
    ("water", (61, 230, 250), 0),
    ("painting, picture", (255, 6, 51), 1),
    ("sofa", (11, 102, 255), 1),
    ("shelf", (255, 7, 71), 1),
    ("house", (255, 9, 224), 0),
    ("sea", (9, 7, 230), 0),
    ("mirror", (220, 220, 220), 1),
    ("rug", (255, 9, 92), 0),
    ("field", (112, 9, 255), 0),
    ("armchair", (8, 255, 214), 1),
    ("seat", (7, 255, 224), 1),
    ("fence", (255, 184, 6), 1),
    ("desk", (10, 255, 71), 1),
    ("rock, stone", (255, 41, 10), 0),
    ("wardrobe, closet, press", (7, 255, 255), 1),
    ("lamp", (224, 255, 8), 1),
    ("tub", (102, 8, 255), 1),
    ("rail", (255, 61, 6), 1),
    ("cushion", (255, 194, 7), 1),
    ("base, pedestal, stand", (255, 122, 8), 0),
    ("box", (0, 255, 20), 1),
    ("column, pillar", (255, 8, 41), 1),
    ("signboard, sign", (255, 5, 153), 1),
    ("chest of drawers, chest, bureau, dresser", (6, 51, 255), 1),
    ("counter", (235, 12, 255), 1),
    ("sand", (160, 150, 20), 0),
    ("sink", (0, 163, 255), 1),
    ("skyscraper", (140, 140, 140), 0),
    ("fireplace", (250, 10, 15), 1),
    ("refrigerator, icebox", (20, 255, 0), 1),
    ("grandstand, covered stand", (31, 255, 0), 0),
    ("path", (255, 31, 0), 0),
    ("stairs", (255, 224, 0), 1),
    ("runway", (153, 255, 0), 0),
    ("case, display case, showcase, vitrine", (0, 0, 255), 1),
    ("pool table, billiard table, snooker table", (255, 71, 0), 1),
    ("pillow", (0, 235, 255), 1),
    ("screen door, screen", (0, 173, 255), 1),
    ("stairway, staircase", (31, 0, 255), 0),
    ("river", (11, 200, 200), 0),
    ("bridge, span", (255, 82, 0), 0),
    ("bookcase", (0, 255, 245), 1),
    ("blind, screen", (0, 61, 255), 0),
    ("coffee table", (0, 255, 112), 1),
    ("toilet, can, commode, crapper, pot, potty, stool, throne", (0, 255, 133), 1),
    ("flower", (255, 0, 0), 1),
    ("book", (255, 163, 0), 1),
    ("hill", (255, 102, 0), 0),
    ("bench", (194, 255, 0), 1),
    ("countertop", (0, 143, 255), 1),
    ("stove", (51, 255, 0), 1),
    ("palm, palm tree", (0, 82, 255), 1),
    ("kitchen island", (0, 255, 41), 1),
    ("computer", (0, 255, 173), 1),
    ("swivel chair", (10, 0, 255), 1),
    ("boat", (173, 255, 0), 1),
    ("bar", (0, 255, 153), 0),
    ("arcade machine", (255, 92, 0), 1),
    ("hovel, hut, hutch, shack, shanty", (255, 0, 255), 0),
    ("bus", (255, 0, 245), 1),
    ("towel", (255, 0, 102), 1),
    ("light", (255, 173, 0), 1),
    ("truck", (255, 0, 20), 1),
    ("tower", (255, 184, 184), 0),
    ("chandelier", (0, 31, 255), 1),
    ("awning, sunshade, sunblind", (0, 255, 61), 1),
    ("street lamp", (0, 71, 255), 1),
    ("booth", (255, 0, 204), 1),
    ("tv", (0, 255, 194), 1),
    ("plane", (0, 255, 82), 1),
    ("dirt track", (0, 10, 255), 0),
    ("clothes", (0, 112, 255), 1),
    ("pole", (51, 0, 255), 1),
    ("land, ground, soil", (0, 194, 255), 0),
    ("bannister, banister, balustrade, balusters, handrail", (0, 122, 255), 1),
    ("escalator, moving staircase, moving stairway", (0, 255, 163), 0),
    ("ottoman, pouf, pouffe, puff, hassock", (255, 153, 0), 1),
    ("bottle", (0, 255, 10), 1),
    ("buffet, counter, sideboard", (255, 112, 0), 0),
    ("poster, posting, placard, notice, bill, card", (143, 255, 0), 0),
    ("stage", (82, 0, 255), 0),
    ("van", (163, 255, 0), 1),
    ("ship", (255, 235, 0), 1),
    ("fountain", (8, 184, 170), 1),
    ("conveyer belt, conveyor belt, conveyer, conveyor, transporter", (133, 0, 255), 0),
    ("canopy", (0, 255, 92), 0),
    ("washer, automatic washer, washing machine", (184, 0, 255), 1),
    ("plaything, toy", (255, 0, 31), 1),
    ("pool", (0, 184, 255), 0),
    ("stool", (0, 214, 255), 1),
    ("barrel, cask", (255, 0, 112), 1),
    ("basket, handbasket", (92, 255, 0), 1),
    ("falls", (0, 224, 255), 0),
    ("tent", (112, 224, 255), 0),
    ("bag", (70, 184, 160), 1),
    ("minibike, motorbike", (163, 0, 255), 1),
    ("cradle", (153, 0, 255), 0),
    ("oven", (71, 255, 0), 1),
    ("ball", (255, 0, 163), 1),
    ("food, solid food", (255, 204, 0), 1),
    ("step, stair", (255, 0, 143), 1),
    ("tank, storage tank", (0, 255, 235), 0),
    ("trade name", (133, 255, 0), 1),
    ("microwave", (255, 0, 235), 1),
    ("pot", (245, 0, 255), 1),
    ("animal", (255, 0, 122), 1),
    ("bicycle", (255, 245, 0), 1),
    ("lake", (10, 190, 212), 0),
    ("dishwasher", (214, 255, 0), 1),
    ("screen", (0, 204, 255), 1),
    ("blanket, cover", (20, 0, 255), 0),
    ("sculpture", (255, 255, 0), 1),
    ("hood, exhaust hood", (0, 153, 255), 1),
    ("sconce", (0, 41, 255), 1),
    ("vase", (0, 255, 204), 1),
    ("traffic light", (41, 0, 255), 1),
    ("tray", (41, 255, 0), 1),
    ("trash can", (173, 0, 255), 1),
    ("fan", (0, 245, 255), 1),
    ("pier", (71, 0, 255), 0),
    ("crt screen", (122, 0, 255), 0),
    ("plate", (0, 255, 184), 1),
    ("monitor", (0, 92, 255), 1),
    ("bulletin board", (184, 255, 0), 1),
    ("shower", (0, 133, 255), 0),
    ("radiator", (255, 214, 0), 1),
    ("glass, drinking glass", (25, 194, 194), 1),
    ("clock", (102, 255, 0), 1),
    ("flag", (92, 0, 255), 1),
]

# One dict per class; "id" is the 0-based class id (label - 1), used as the category id of
# the ADE20K panoptic and instance json files written by datasets/prepare_ade20k_*.py.
ADE20K_150_CATEGORIES = [
    {"id": i, "name": name, "color": list(color), "isthing": isthing}
    for i, (name, color, isthing) in enumerate(_ADE20K_150)
]

# Class id (0-based) of each category of the ADE20K instance-segmentation annotations: value
# k (1..100) of the R channel of ``annotations_instance/*.png`` is class
# ``ADE20K_INSTANCE_CLASS_IDS[k - 1]``. The 100 instance categories (instanceInfo100_*.txt of
# the Places challenge) are the thing classes in class-id order.
ADE20K_INSTANCE_CLASS_IDS = [c["id"] for c in ADE20K_150_CATEGORIES if c["isthing"]]


def ade20k_instances(instance_png, source):
    """
    The instances of one ADE20K ``annotations_instance`` PNG.

    Args:
        instance_png (ndarray): (H, W, 3) integer array of the PNG: R channel = instance
            category 1..100, G channel = instance id (0 = no instance).
        source: the PNG's path, named in errors.

    Returns:
        list[tuple[ndarray, int]]: the (H, W) bool mask and the 0-based class id of each
        instance, in instance-id order.

    Raises:
        ValueError: naming ``source`` when an instance has several categories or one outside
            1..100.
    """
    instances = []
    for inst in np.unique(instance_png[..., 1]):
        if inst == 0:
            continue
        mask = instance_png[..., 1] == inst
        categories = np.unique(instance_png[..., 0][mask])
        if len(categories) != 1 or not 1 <= categories[0] <= len(ADE20K_INSTANCE_CLASS_IDS):
            raise ValueError(f"{source}: instance {inst} has instance categories "
                             f"{categories.tolist()}, expected one value in 1..100.")
        instances.append((mask, ADE20K_INSTANCE_CLASS_IDS[categories[0] - 1]))
    return instances
