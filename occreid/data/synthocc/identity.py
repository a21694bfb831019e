"""SynthOcc identities: the appearance attributes a person keeps in every image, and how we sample them so
that identities are hard to tell apart.

Identities come in *families*: a base appearance plus siblings that differ from it in one or two attributes,
mostly attributes that are only visible on part of the body (shoes, lower-body colour or type, the logo on the
chest, the bag) or from some views (the logo only from the front). A model that loses that part of the body to
an occluder, or sees the wrong view, cannot separate the siblings. Colours come from small shared palettes, so
unrelated identities collide on many attributes too.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, fields, replace

import numpy as np

RGB = tuple[int, int, int]

SKIN: dict[str, RGB] = {
    "pale": (236, 200, 176),
    "light": (222, 178, 146),
    "tan": (190, 140, 105),
    "brown": (145, 100, 70),
    "dark": (95, 65, 48),
}
HAIR: dict[str, RGB] = {
    "black": (25, 22, 22),
    "dark_brown": (65, 42, 30),
    "brown": (115, 75, 45),
    "blond": (205, 170, 105),
    "grey": (150, 148, 145),
    "red": (150, 60, 30),
}
# Upper-body colours include near-duplicates (navy/black, red/dark red, grey/white) on purpose.
UPPER: dict[str, RGB] = {
    "white": (225, 225, 220),
    "black": (35, 35, 40),
    "grey": (128, 128, 132),
    "red": (185, 40, 40),
    "dark_red": (115, 30, 40),
    "blue": (50, 85, 175),
    "navy": (35, 45, 90),
    "light_blue": (125, 170, 215),
    "green": (50, 130, 70),
    "olive": (110, 115, 60),
    "yellow": (220, 190, 60),
    "orange": (220, 120, 40),
    "pink": (220, 140, 170),
    "purple": (110, 60, 140),
    "brown": (115, 80, 50),
    "beige": (200, 180, 145),
}
LOWER: dict[str, RGB] = {
    "black": (30, 30, 35),
    "navy": (40, 48, 80),
    "jeans": (70, 95, 140),
    "light_jeans": (120, 145, 180),
    "grey": (110, 110, 115),
    "khaki": (175, 160, 120),
    "brown": (100, 70, 45),
    "white": (215, 215, 210),
    "dark_green": (45, 70, 50),
    "red": (160, 40, 45),
}
SHOES: dict[str, RGB] = {
    "white": (235, 235, 235),
    "black": (20, 20, 20),
    "red": (190, 35, 35),
    "blue": (40, 70, 170),
    "brown": (110, 70, 40),
    "grey": (140, 140, 140),
}
BAG: dict[str, RGB] = {
    "black": (25, 25, 28),
    "brown": (120, 80, 45),
    "red": (170, 35, 40),
    "blue": (45, 75, 160),
    "grey": (120, 120, 125),
    "beige": (195, 175, 135),
    "green": (50, 110, 60),
}

UPPER_PATTERNS = ("plain", "stripes", "two_tone", "logo")
LOGO_SHAPES = ("circle", "square")
SLEEVES = ("short", "long")
LOWER_TYPES = ("trousers", "shorts", "skirt")
HAIR_STYLES = ("short", "long")
BAG_TYPES = ("none", "backpack", "shoulder_bag")
SIDES = ("left", "right")


@dataclass(frozen=True)
class Identity:
    """The appearance of one person. Colours are palette names (see the dicts above)."""

    height: float  # relative body height, ~0.92..1.04
    build: float  # relative body width, ~0.85..1.2
    skin: str
    hair: str
    hair_style: str
    upper: str
    upper_pattern: str  # plain, stripes, two_tone or logo
    upper_second: str  # stripe / lower-half / logo colour (ignored when plain)
    logo_shape: str
    sleeve: str
    lower: str
    lower_type: str
    shoes: str
    bag: str  # none, backpack, shoulder_bag
    bag_side: str  # which hip a shoulder bag hangs on (person's left/right)
    bag_colour: str

    def key(self) -> tuple:
        """The categorical attributes; two identities with the same key look the same up to body build."""
        values = astuple(self)[2:]
        return tuple(v for f, v in zip(fields(self)[2:], values) if _matters(self, f.name))


def _matters(identity: Identity, name: str) -> bool:
    if name in ("upper_second",):
        return identity.upper_pattern != "plain"
    if name == "logo_shape":
        return identity.upper_pattern == "logo"
    if name in ("bag_side",):
        return identity.bag == "shoulder_bag"
    if name == "bag_colour":
        return identity.bag != "none"
    return True


def attribute_difference(a: Identity, b: Identity) -> list[str]:
    """Names of the visible categorical attributes in which two identities differ."""
    names = [f.name for f in fields(Identity)[2:]]
    return [n for n in names if (_matters(a, n) or _matters(b, n)) and getattr(a, n) != getattr(b, n)]


def _choice(rng: np.random.Generator, options, p=None):
    options = list(options)
    return options[int(rng.choice(len(options), p=p))]


def sample_identity(rng: np.random.Generator) -> Identity:
    """One base appearance with marginal frequencies roughly like a city street."""
    upper = _choice(rng, UPPER)
    pattern = _choice(rng, UPPER_PATTERNS, p=[0.45, 0.2, 0.15, 0.2])
    return Identity(
        height=float(rng.uniform(0.92, 1.04)),
        build=float(rng.uniform(0.85, 1.2)),
        skin=_choice(rng, SKIN),
        hair=_choice(rng, HAIR, p=[0.35, 0.25, 0.15, 0.12, 0.08, 0.05]),
        hair_style=_choice(rng, HAIR_STYLES, p=[0.65, 0.35]),
        upper=upper,
        upper_pattern=pattern,
        upper_second=_choice(rng, [c for c in UPPER if c != upper]),
        logo_shape=_choice(rng, LOGO_SHAPES),
        sleeve=_choice(rng, SLEEVES),
        lower=_choice(rng, LOWER),
        lower_type=_choice(rng, LOWER_TYPES, p=[0.65, 0.2, 0.15]),
        shoes=_choice(rng, SHOES),
        bag=_choice(rng, BAG_TYPES, p=[0.5, 0.25, 0.25]),
        bag_side=_choice(rng, SIDES),
        bag_colour=_choice(rng, BAG),
    )


# What a sibling changes, with weights: mostly part-local evidence (shoes, lower body, logo, bag).
MUTATIONS: dict[str, float] = {
    "shoes": 0.18,
    "lower": 0.15,
    "lower_type": 0.12,
    "logo": 0.15,
    "bag": 0.15,
    "sleeve": 0.08,
    "hair": 0.07,
    "upper_second": 0.05,
    "upper": 0.05,
}


def mutate(identity: Identity, what: str, rng: np.random.Generator) -> Identity:
    """A copy of `identity` with one visible attribute group changed (never a no-op)."""
    i = identity
    if what == "shoes":
        return replace(i, shoes=_choice(rng, [c for c in SHOES if c != i.shoes]))
    if what == "lower":
        return replace(i, lower=_choice(rng, [c for c in LOWER if c != i.lower]))
    if what == "lower_type":
        return replace(i, lower_type=_choice(rng, [t for t in LOWER_TYPES if t != i.lower_type]))
    if what == "logo":  # add, remove or recolour the chest logo: only visible from the front
        if i.upper_pattern == "logo":
            if rng.random() < 0.5:
                return replace(i, upper_pattern="plain")
            return replace(
                i, upper_second=_choice(rng, [c for c in UPPER if c not in (i.upper, i.upper_second)])
            )
        second = (
            i.upper_second if i.upper_pattern != "plain" else _choice(rng, [c for c in UPPER if c != i.upper])
        )
        return replace(i, upper_pattern="logo", upper_second=second)
    if what == "bag":  # bag type or colour; never only the side (a horizontal flip would undo it)
        if i.bag != "none" and rng.random() < 0.4:
            return replace(i, bag_colour=_choice(rng, [c for c in BAG if c != i.bag_colour]))
        return replace(i, bag=_choice(rng, [b for b in BAG_TYPES if b != i.bag]))
    if what == "sleeve":
        return replace(i, sleeve="long" if i.sleeve == "short" else "short")
    if what == "hair":
        if rng.random() < 0.5:
            return replace(i, hair_style="long" if i.hair_style == "short" else "short")
        return replace(i, hair=_choice(rng, [c for c in HAIR if c != i.hair]))
    if what == "upper_second":
        if i.upper_pattern == "plain":
            return replace(i, upper_pattern=_choice(rng, ["stripes", "two_tone"]))
        return replace(i, upper_second=_choice(rng, [c for c in UPPER if c not in (i.upper, i.upper_second)]))
    if what == "upper":
        return replace(i, upper=_choice(rng, [c for c in UPPER if c not in (i.upper, i.upper_second)]))
    raise ValueError(f"unknown mutation {what!r}")


def sample_identities(n: int, rng: np.random.Generator) -> list[Identity]:
    """`n` distinct identities, built as families (sizes 1-5) of a base appearance and its siblings, each
    sibling 1 or 2 attribute changes away from the base. Families are contiguous in the returned list.
    No two identities share the categorical key (`Identity.key`)."""
    names, weights = list(MUTATIONS), np.array(list(MUTATIONS.values()))
    weights = weights / weights.sum()
    out: list[Identity] = []
    seen: set[tuple] = set()
    while len(out) < n:
        size = int(rng.choice([1, 2, 3, 4, 5], p=[0.1, 0.25, 0.3, 0.2, 0.15]))
        base = sample_identity(rng)
        if base.key() in seen:
            continue
        family = [base]
        for _ in range(50 * size):
            if len(family) == size:
                break
            sibling = base
            for what in rng.choice(names, size=1 if rng.random() < 0.6 else 2, replace=False, p=weights):
                sibling = mutate(sibling, str(what), rng)
            sibling = replace(sibling, build=float(np.clip(base.build + rng.normal(0, 0.03), 0.85, 1.2)))
            if sibling.key() not in seen and all(sibling.key() != m.key() for m in family):
                family.append(sibling)
        for member in family:
            seen.add(member.key())
        out.extend(family)
    return out[:n]
