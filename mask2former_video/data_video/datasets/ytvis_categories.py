"""The 40 categories of YouTube-VIS 2019 and of YouTube-VIS 2021 (dataset ids 1..40)."""
from detectron2.utils.colormap import colormap

_YTVIS_2019_NAMES = [
    "person", "giant_panda", "lizard", "parrot", "skateboard", "sedan", "ape", "dog", "snake",
    "monkey", "hand", "rabbit", "duck", "cat", "cow", "fish", "train", "horse", "turtle", "bear",
    "motorbike", "giraffe", "leopard", "fox", "deer", "owl", "surfboard", "airplane", "truck",
    "zebra", "tiger", "elephant", "snowboard", "boat", "shark", "mouse", "frog", "eagle",
    "earless_seal", "tennis_racket",
]
_YTVIS_2021_NAMES = [
    "airplane", "bear", "bird", "boat", "car", "cat", "cow", "deer", "dog", "duck",
    "earless_seal", "elephant", "fish", "flying_disc", "fox", "frog", "giant_panda", "giraffe",
    "horse", "leopard", "lizard", "monkey", "motorbike", "mouse", "parrot", "person", "rabbit",
    "shark", "skateboard", "snake", "snowboard", "squirrel", "surfboard", "tennis_racket",
    "tiger", "train", "truck", "turtle", "whale", "zebra",
]


def _categories(names):
    colors = colormap(rgb=True, maximum=255).astype(int).tolist()
    return [{"id": i + 1, "name": name, "color": colors[i % len(colors)]}
            for i, name in enumerate(names)]


YTVIS_CATEGORIES_2019 = _categories(_YTVIS_2019_NAMES)
YTVIS_CATEGORIES_2021 = _categories(_YTVIS_2021_NAMES)
