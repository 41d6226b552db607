"""What a person looks like: skin and hair colours, clothes (sleeves, trousers, skirt, textures), hairstyle, glasses."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .canvas import _mul, _rand_color

_SKIN = np.array([(255, 224, 196), (241, 194, 160), (224, 172, 130), (198, 134, 96),
                  (160, 104, 70), (120, 76, 50), (86, 56, 38)], np.float32)
_HAIR = np.array([(25, 20, 18), (60, 40, 28), (105, 70, 42), (150, 105, 60), (205, 175, 115),
                  (150, 150, 150), (140, 60, 35), (235, 235, 230)], np.float32)
_HAIR_P = (0.3, 0.22, 0.14, 0.08, 0.1, 0.07, 0.05, 0.04)


def _garment_color(rng: np.random.Generator) -> tuple[int, int, int]:
    if rng.random() < 0.35:  # greys, black, white, denim-ish: common in photos
        v = rng.uniform(0.08, 0.95)
        return _rand_color(rng, (0.0, 0.15), (v, v))
    return _rand_color(rng, (0.3, 1.0), (0.2, 0.95))


def _cdist(a, b) -> float:
    return float(np.abs(np.subtract(a, b, dtype=np.float32)).sum())


Color = tuple[int, int, int]


@dataclass
class _Look:
    """Colours, garments and hair of one person (fractions are along the limb segment they end on)."""

    skin: Color
    hair: Color
    shirt: Color
    pants: Color
    shoes: Color
    sleeve: str                 # "none", "short", "long", "3q"
    sleeve_f: float             # where a short sleeve ends along the upper arm
    bottom: str                 # "trousers", "shorts", "skirt"
    shorts_f: float
    skirt_f: float
    long_shirt: bool
    socks: Color | None
    hairstyle: str              # "short", "long", "bald", "hat"
    hat: Color
    hair_len: float
    glasses: bool
    beard: bool
    iris: Color
    lips: Color
    tex_shirt: int              # 0 plain, 1 stripes, 2 checks, 3 grain
    tex_pants: int
    shade: float                # brightness of the unlit side


def _sample_look(rng: np.random.Generator, age: float) -> _Look:
    """Sample skin, hair and clothes; colours are redrawn until sleeves, skin and waist line stand apart."""
    u = rng.uniform
    t = u(0, len(_SKIN) - 1)
    i = int(t)
    skin = _SKIN[i] + (_SKIN[min(i + 1, len(_SKIN) - 1)] - _SKIN[i]) * (t - i)
    skin = tuple(int(np.clip(c * u(0.93, 1.07), 0, 255)) for c in skin)
    hair = _HAIR[rng.choice(len(_HAIR), p=_HAIR_P)] * u(0.85, 1.15)
    if age < 0.5 and hair[0] > 140 and hair[1] > 140 and hair[0] - hair[2] < 30:
        hair = _HAIR[2]  # no grey-haired children
    hair = tuple(int(np.clip(c, 0, 255)) for c in hair)
    shirt = _garment_color(rng)
    for _ in range(6):  # sleeves must stand out from skin
        if _cdist(shirt, skin) > 90:
            break
        shirt = _garment_color(rng)
    pants = _garment_color(rng)
    for _ in range(6):  # and the waist line from the shirt
        if _cdist(pants, shirt) > 110 and _cdist(pants, skin) > 60:
            break
        pants = _garment_color(rng)
    shoes = _garment_color(rng) if rng.random() < 0.4 else _rand_color(rng, (0, 0.3), (0.05, 0.3))
    sleeve = ("none", "short", "long", "3q")[rng.choice(4, p=(0.12, 0.4, 0.4, 0.08))]
    sleeve_f = u(0.3, 0.7)  # where a short sleeve ends along the upper arm
    r = rng.random()
    bottom = "trousers" if r < 0.6 else "shorts" if r < 0.8 else "skirt"
    shorts_f = u(0.35, 0.85)
    skirt_f = u(0.45, 0.9)
    long_shirt = rng.random() < 0.3
    socks = _garment_color(rng) if rng.random() < 0.3 else None
    r = rng.random()
    hairstyle = "short" if r < 0.5 else "long" if r < 0.8 else "bald" if r < 0.88 else "hat"
    hat = _garment_color(rng)
    hair_len = u(0.5, 1.7)
    glasses = rng.random() < 0.1
    beard = age > 0.9 and rng.random() < 0.08
    iris = tuple(int(c) for c in (_rand_color(rng, (0.3, 0.8), (0.1, 0.45))))
    lips = _mul(skin, 0.75)
    lips = (min(255, lips[0] + 40), lips[1], lips[2])
    tex_shirt = int(rng.choice(4, p=(0.6, 0.2, 0.1, 0.1)))  # plain, stripes, checks, noise
    tex_pants = int(rng.choice(4, p=(0.75, 0.05, 0.05, 0.15)))
    shade = u(0.72, 0.86)
    return _Look(skin=skin, hair=hair, shirt=shirt, pants=pants, shoes=shoes, sleeve=sleeve, sleeve_f=sleeve_f,
                 bottom=bottom, shorts_f=shorts_f, skirt_f=skirt_f, long_shirt=long_shirt, socks=socks,
                 hairstyle=hairstyle, hat=hat, hair_len=hair_len, glasses=glasses, beard=beard, iris=iris,
                 lips=lips, tex_shirt=tex_shirt, tex_pants=tex_pants, shade=shade)
