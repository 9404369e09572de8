"""
The 66 labels of Mapillary Vistas v1.2 (``config_v1.2.json``), in label order: 65 evaluated
classes and ``void--unlabeled`` (label 65, the ignore label of the semantic task).

Label ``k`` of ``labels/*.png`` is entry ``k`` here; in ``panoptic/panoptic_2018.json`` the
category id of entry ``k`` is ``k + 1``.
"""

# (name, readable, color, instances)
_MAPILLARY_VISTAS_V12 = [
    ("animal--bird", "Bird", (165, 42, 42), True),
    ("animal--ground-animal", "Ground Animal", (0, 192, 0), True),
    ("construction--barrier--curb", "Curb", (196, 196, 196), False),
    ("construction--barrier--fence", "Fence", (190, 153, 153), False),
    ("construction--barrier--guard-rail", "Guard Rail", (180, 165, 180), False),
    ("construction--barrier--other-barrier", "Barrier", (90, 120, 150), False),
    ("construction--barrier--wall", "Wall", (102, 102, 156), False),
    ("construction--flat--bike-lane", "Bike Lane", (128, 64, 255), False),
    ("construction--flat--crosswalk-plain", "Crosswalk - Plain", (140, 140, 200), True),
    ("construction--flat--curb-cut", "Curb Cut", (170, 170, 170), False),
    ("construction--flat--parking", "Parking", (250, 170, 160), False),
    ("construction--flat--pedestrian-area", "Pedestrian Area", (96, 96, 96), False),
    ("construction--flat--rail-track", "Rail Track", (230, 150, 140), False),
    ("construction--flat--road", "Road", (128, 64, 128), False),
    ("construction--flat--service-lane", "Service Lane", (110, 110, 110), False),
    ("construction--flat--sidewalk", "Sidewalk", (244, 35, 232), False),
    ("construction--structure--bridge", "Bridge", (150, 100, 100), False),
    ("construction--structure--building", "Building", (70, 70, 70), False),
    ("construction--structure--tunnel", "Tunnel", (150, 120, 90), False),
    ("human--person", "Person", (220, 20, 60), True),
    ("human--rider--bicyclist", "Bicyclist", (255, 0, 0), True),
    ("human--rider--motorcyclist", "Motorcyclist", (255, 0, 100), True),
    ("human--rider--other-rider", "Other Rider", (255, 0, 200), True),
    ("marking--crosswalk-zebra", "Lane Marking - Crosswalk", (200, 128, 128), True),
    ("marking--general", "Lane Marking - General", (255, 255, 255), False),
    ("nature--mountain", "Mountain", (64, 170, 64), False),
    ("nature--sand", "Sand", (230, 160, 50), False),
    ("nature--sky", "Sky", (70, 130, 180), False),
    ("nature--snow", "Snow", (190, 255, 255), False),
    ("nature--terrain", "Terrain", (152, 251, 152), False),
    ("nature--vegetation", "Vegetation", (107, 142, 35), False),
    ("nature--water", "Water", (0, 170, 30), False),
    ("object--banner", "Banner", (255, 255, 128), True),
    ("object--bench", "Bench", (250, 0, 30), True),
    ("object--bike-rack", "Bike Rack", (100, 140, 180), True),
    ("object--billboard", "Billboard", (220, 220, 220), True),
    ("object--catch-basin", "Catch Basin", (220, 128, 128), True),
    ("object--cctv-camera", "CCTV Camera", (222, 40, 40), True),
    ("object--fire-hydrant", "Fire Hydrant", (100, 170, 30), True),
    ("object--junction-box", "Junction Box", (40, 40, 40), True),
    ("object--mailbox", "Mailbox", (33, 33, 33), True),
    ("object--manhole", "Manhole", (100, 128, 160), True),
    ("object--phone-booth", "Phone Booth", (142, 0, 0), True),
    ("object--pothole", "Pothole", (70, 100, 150), False),
    ("object--street-light", "Street Light", (210, 170, 100), True),
    ("object--support--pole", "Pole", (153, 153, 153), True),
    ("object--support--traffic-sign-frame", "Traffic Sign Frame", (128, 128, 128), True),
    ("object--support--utility-pole", "Utility Pole", (0, 0, 80), True),
    ("object--traffic-light", "Traffic Light", (250, 170, 30), True),
    ("object--traffic-sign--back", "Traffic Sign (Back)", (192, 192, 192), True),
    ("object--traffic-sign--front", "Traffic Sign (Front)", (220, 220, 0), True),
    ("object--trash-can", "Trash Can", (140, 140, 20), True),
    ("object--vehicle--bicycle", "Bicycle", (119, 11, 32), True),
    ("object--vehicle--boat", "Boat", (150, 0, 255), True),
    ("object--vehicle--bus", "Bus", (0, 60, 100), True),
    ("object--vehicle--car", "Car", (0, 0, 142), True),
    ("object--vehicle--caravan", "Caravan", (0, 0, 90), True),
    ("object--vehicle--motorcycle", "Motorcycle", (0, 0, 230), True),
    ("object--vehicle--on-rails", "On Rails", (0, 80, 100), False),
    ("object--vehicle--other-vehicle", "Other Vehicle", (128, 64, 64), True),
    ("object--vehicle--trailer", "Trailer", (0, 0, 110), True),
    ("object--vehicle--truck", "Truck", (0, 0, 70), True),
    ("object--vehicle--wheeled-slow", "Wheeled Slow", (0, 0, 192), True),
    ("void--car-mount", "Car Mount", (32, 32, 32), False),
    ("void--ego-vehicle", "Ego Vehicle", (120, 10, 10), False),
    ("void--unlabeled", "Unlabeled", (0, 0, 0), False),
]

# The 66 labels as dicts, in the layout of config_v1.2.json's "labels" list.
MAPILLARY_VISTAS_LABELS = [
    {"name": name, "readable": readable, "color": list(color), "instances": instances,
     "evaluate": name != "void--unlabeled"}
    for name, readable, color, instances in _MAPILLARY_VISTAS_V12
]
# Label value of "void--unlabeled": the ignore label of the semantic task.
MAPILLARY_VISTAS_IGNORE_LABEL = 65
