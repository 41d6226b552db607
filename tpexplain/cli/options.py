"""The options several commands share, declared once, and the parsers of their values.

Nothing here imports torch or matplotlib at module level: `tpexplain --help` must stay fast.
"""
from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

import click

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------- options

model = click.option("--model", "model_name", default="default", show_default=True,
                     help="Zoo name (`tpexplain models`).")
weights = click.option("--weights", default=None, type=click.Path(),
                       help="Checkpoint file (default: the zoo's; 'random' for seeded random weights).")
flip = click.option("--flip/--no-flip", default=True, show_default=True,
                    help="Flip test: average with the mirrored input's heatmaps.")
decode = click.option("--decode", type=click.Choice(["official", "guarded"]), default="official", show_default=True,
                      help="Keypoint decoding: the model family's official DARK post-processing, or DARK that "
                           "keeps the argmax when the step is over a pixel (docs/fidelity.md).")
query = click.option("--query", type=click.Choice(["official", "geometric"]), default="official",
                     show_default=True,
                     help="A keypoint's query token: TransPose's visualisation (int((4·x_hm+0.5)/stride)), or the "
                          "token under the keypoint in the crop (docs/fidelity.md).")


def _check_box(ctx, param, value: str | None) -> str | None:
    """Fail on a malformed box at parse time; whether it fits the image is checked once it is read."""
    if value is not None:
        from ..io import MAX_COORD, parse_bbox
        try:
            parse_bbox(value)
        except ValueError:
            raise click.BadParameter(f"expected four numbers x,y,w,h (finite, within ±{MAX_COORD:g}) with a "
                                     f"positive width and height, got '{value}'") from None
    return value


bbox = click.option("--bbox", default=None, metavar="X,Y,W,H", callback=_check_box,
                    help="Person box in image pixels (default: the people in the image are found first and the "
                         "largest is explained; see --person).")
person = click.option("--person", default=None, metavar="N|ID",
                      help="Which person: the number of a detected person as listed on stderr (1 = the largest), "
                           "or with --coco an annotation id or a 1-based index in the file's order.")
coco = click.option("--coco", "coco", default=None, type=click.Path(), metavar="ANN",
                    help="COCO person-keypoints file listing this image (matched by file name): explain an "
                         "annotated person (--person) with its ground truth drawn and scored (OKS, PCK).")
at = click.option("--at", type=click.Choice(["pred", "gt"]), default="pred", show_default=True,
                  help="Take the keypoint from the prediction or from the ground truth (needs --coco, and the "
                       "joint labelled).")
out_file = click.option("-o", "--out", "out", type=click.Path(dir_okay=False), default=None,
                        help="Output file (default: derived from the image name, in the current folder); its "
                             "extension is its format. An existing file is replaced only if tpexplain wrote "
                             "it (or with --force); never the input image.")
force = click.option("--force", is_flag=True,
                     help="Replace existing outputs even if tpexplain did not write them (never an input).")


def model_options(f):
    """--model, --weights, --flip/--no-flip and --decode: every command that runs a model."""
    return model(weights(flip(decode(f))))


def figure_options(f):
    """The model options plus --bbox, --person, --coco, -o and --force: every command that explains one person
    in one image."""
    return model_options(bbox(person(coco(out_file(force(f))))))


def box_option(name: str, help: str):
    """An X,Y,W,H option checked like --bbox (e.g. occlusion's --region)."""
    return click.option(name, default=None, metavar="X,Y,W,H", callback=_check_box, help=help)


# --------------------------------------------------------------------------------------------- parsers

@lru_cache(maxsize=None)   # a meta-device build per model name is enough for parsing and output names
def keypoint_set(model_name: str):
    """The keypoints `model_name` predicts (COCO's 17, MPII's 16, ...), read without loading weights."""
    from ..keypoints import keypoint_set as named_set
    from ..zoo import keypoint_names
    return named_set(keypoint_names(model_name))


def parse_keypoints(text: str, model_name: str, option: str = "--keypoint") -> list[str]:
    """'all' or a comma list of the model's keypoint names → canonical names.

    An empty list is a usage error; a name the model does not predict fails like an unknown model does
    (ValueError, with suggestions).
    """
    names = keypoint_set(model_name).parse(text)
    if not names:
        raise click.BadParameter("empty: give a keypoint name, a comma list, or all", param_hint=f"'{option}'")
    return names


def keypoint_tag(keypoints: list[str], model_name: str) -> str:
    """The keypoints' part of a default output name: 'all' for every keypoint of the model."""
    return "all" if set(keypoints) == set(keypoint_set(model_name).names) else "-".join(keypoints)


def parse_layers(text: str, num_layers: int, option: str = "--layer") -> list[int]:
    """'last', 'all', or 1-based layer numbers separated by commas → 0-based indices.

    Text that is not a layer list is a usage error; a layer the model does not have is a ValueError.
    """
    t = text.strip().lower()
    if t == "last":
        return [num_layers - 1]
    if t == "all":
        return list(range(num_layers))
    out = []
    for part in t.split(","):
        try:
            n = int(part)
        except ValueError:
            raise click.BadParameter(f"'{text}': use 1..{num_layers}, last or all", param_hint=f"'{option}'") \
                from None
        if not 1 <= n <= num_layers:
            raise ValueError(f"{option} {n} out of range: the model has {num_layers} encoder layers (1..{num_layers})")
        out.append(n - 1)
    return out


def check_outputs(paths, inputs, force: bool, kinds=("figure",)) -> None:
    """Every output of a command by the output policy (tpexplain.io.check_output), before any work;
    `kinds` pairs with `paths` (the main output is named -o in the messages, side outputs by their path)."""
    from pathlib import Path

    from ..io import FORMATS, check_output
    main, formats = Path(paths[0]), FORMATS[kinds[0]]
    if main.suffix.lstrip(".").lower() not in formats:
        raise click.BadParameter(f"'{main}' must end in one of .{', .'.join(formats)}", param_hint="'-o'")
    for i, (path, kind) in enumerate(zip(paths, kinds)):
        check_output(path, inputs, kind=kind, force=force, option="-o" if i == 0 else "side output")


def check_person(person: str | None, coco: str | None) -> None:
    """A usage error, before any work, for a --person that is no number without --coco (an annotation id
    needs --coco; a detected person is a number)."""
    if person is not None and coco is None:
        try:
            int(str(person).strip())
        except ValueError:
            raise click.UsageError(f"--person takes a number, or an annotation id with --coco (got '{person}')") \
                from None


def _match_keypoints(chosen, coco: str, pose_model) -> None:
    """Put `chosen`'s ground truth in the model's keypoint order, its joints matched to the file's by name as
    batch and findings do (`keypoints.keypoint_order`; a file sharing no joint is refused in one line);
    the file's OKS sigmas follow the same order."""
    from ..keypoints import keypoint_order
    from ..detect.select import ground_truth
    from ..io import read_coco
    from ..training.oks import declared_keypoints
    names, _, sigmas = declared_keypoints(read_coco(coco), coco)
    order = keypoint_order(list(names), len(names), tuple(pose_model.keypoint_names), str(coco))
    chosen.order = order
    chosen.sigmas = tuple(float(sigmas[i]) if i >= 0 else 1.0 for i in order) if sigmas is not None else None
    if chosen.annotation is not None:
        chosen.ground_truth = ground_truth(chosen.annotation, order)


def choose(pose_model, img, image: str, bbox: str | None, coco: str | None = None, person: str | None = None,
           at: str = "pred"):
    """The person to explain (`tpexplain.detect.select.choose_person`: --bbox, --coco/--person, or the largest
    person found), checked for what --at needs. People are found by the OpenCV detector alone, not re-scored
    by the pose model, so that every model explains the same person of a photo. With --coco, the ground truth
    is in the model's keypoint order, its joints matched by name (the rule batch follows)."""
    from ..api import detect_people
    from ..detect.select import MATCH_IOU, choose_person
    from ..io import parse_bbox
    check_person(person, coco)
    if at == "gt" and coco is None:
        raise ValueError(f"--at gt needs the person's ground truth: give --coco ANN listing {Path(image).name}")
    box = parse_bbox(bbox, img.shape, "--bbox") if bbox else None
    chosen = choose_person(img, image, box, coco, person, detect=detect_people)
    if coco is not None:
        _match_keypoints(chosen, coco, pose_model)
    if at == "gt" and box is not None and chosen.annotation is None:
        raise ValueError(f"--at gt: --bbox matches no annotated person (IoU \u2265 {MATCH_IOU:g})")
    if at == "gt" and chosen.ground_truth is None:
        raise ValueError(f"--at gt: {chosen.label} has no labelled keypoints the model predicts (use --at pred)")
    return chosen


def _area(ann: dict) -> float:
    """An annotation's OKS scale: its area; CrowdPose stores none: 0.53 x the box area, as batch and eval."""
    return float(ann["area"]) if "area" in ann else 0.53 * ann["bbox"][2] * ann["bbox"][3]


def weights_name(weights: str | None) -> str | None:
    """What figures and side files say of the weights: "random", the checkpoint's file name, or None for
    the zoo's own."""
    return None if weights is None else "random" if str(weights) == "random" else Path(str(weights)).name


def annotate(ex, chosen, image: str, model_name: str, weights: str | None = None) -> None:
    """Name the explained person on `ex` (meta: image, person, model, box), attach its ground truth, and say
    how well the prediction fits it (OKS, PCK) and whether it fits another annotated person better."""
    ex.meta.update(image=Path(image).name, person=chosen.label, model=model_name, box=list(chosen.box),
                   weights=weights_name(weights))
    ex.ground_truth = chosen.ground_truth
    if chosen.ground_truth is None or chosen.annotation is None:
        return
    from ..detect.select import ground_truth
    from ..keypoints import COCO_KEYPOINTS, OKS_SIGMAS
    from ..training.oks import person_accuracy
    sigmas = chosen.sigmas
    if chosen.order is None:        # not matched by name (a Person built without `choose`)
        sigmas = OKS_SIGMAS if tuple(ex.keypoint_names) == COCO_KEYPOINTS else None
    others = [(a.get("id"), ground_truth(a, chosen.order), _area(a), a["bbox"]) for a in chosen.others
              if ground_truth(a, chosen.order) is not None
              and ground_truth(a, chosen.order).shape == chosen.ground_truth.shape]
    ann = chosen.annotation
    acc = person_accuracy(ex.keypoints, chosen.ground_truth, _area(ann), ann["bbox"], sigmas, others)
    ex.meta["accuracy"] = {"annotation": ann.get("id"), **acc}
    oks = "n/a (no sigmas for these keypoints)" if acc["oks"] is None else f"{acc['oks']:.3f}"
    pck = "n/a" if acc["pck"] is None else f"{acc['pck']:.3f}"
    log.info(f"{chosen.label}: OKS {oks}, PCK {pck} ({acc['labelled']} labelled keypoints)")
    if acc["closer_to"] is not None:
        log.warning(f"the prediction fits annotation {acc['closer_to']} better ({acc['closer_fit']:.3f}) than "
                    f"{chosen.label}: it may have taken a neighbour's joints")


def prepare(image: str, model_name: str, weights: str | None, bbox: str | None, out: str | None,
            default_out: str, force: bool = False, kind: str = "figure", decode: str = "official",
            coco: str | None = None, person: str | None = None, at: str = "pred"):
    """Check the output path and read the image (cheap, so first), load the model, then choose the person
    (`choose`); a --person that is no number without --coco fails before any of it.

    Returns (pose_model, image, person, out_path); `person.box` is the box to explain.
    """
    from ..api import load
    from ..io import read_image
    check_person(person, coco)
    out_path = Path(out or default_out)
    check_outputs([out_path], [image, weights, coco], force, (kind,))
    img = read_image(image)
    pm = load(model_name, weights, decode=decode)
    return pm, img, choose(pm, img, image, bbox, coco, person, at), out_path
