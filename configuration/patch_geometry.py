"""Geometry of the patch embedding of image and volume models: kernel, stride, padding and token-grid shape.

A patch is a convolution kernel of `patch_size` cells per axis, masked to a `cuboid` (every cell), a `cylinder` (a
disk over the last two axes times the full extent of the first axis of a volume) or a `sphere` (a ball over every
axis). Its stride is `patch_stride`, or is derived from a packing strategy (tinyBIG): centres placed every
`round_down(multiplier * r)` cells along each axis, with r the half-extent `(patch_size - 1) / 2` of that axis,
floored at 1 (tinyBIG's symmetric patches have odd sizes; for an even patch, whose extra cell lies after the centre,
r is the mean half-extent, where tinyBIG's asymmetric extents would take the (k - 1) // 2 cells before the centre:
stride 3 against 2 for a 4-cell `complete_square`). Patches packed by a strategy are centred on their cells: padding
`p = (k - 1) // 2` on both sides, a grid of `(n + 2p - k) // stride + 1` cells (`centered_patches=True` does the
same for an explicit `patch_stride`: tinyBIG's `cd_h`, `cd_w`, `cd_d`). For tinyBIG's symmetric patches (odd k =
2r+1) that is `ceil(n / stride)`, centres at `range(0, n, stride)` as in tinyBIG; an even patch has its extra cell
after the centre, and the grid keeps only the centres whose patch ends within the padding, `ceil((n - 1) / stride)`
(a 4-cell patch with stride 1 on 32 pixels gives 31 cells). Other patches are not padded (ViT patchify).

This module is pure Python so that the config can compute the token grid without importing the modeling code.
"""

import math

PATCH_SHAPES = ("cuboid", "cylinder", "sphere")

# tinyBIG's centre distances per strategy (`tinybig.koala.geometry` cuboid / cylinder / sphere), as multipliers of a
# patch's half-extent along tinyBIG's axes (h, w, d): the half-extent p of each axis for a cuboid, the radius r for the
# round axes and the half-depth p_d for a cylinder's depth. `None` is stride 1 on every axis (densest packing).
# 0.6667 and 1.3333 are tinyBIG's literals (the strides are truncated to ints, so they are kept as written).
SQRT2, SQRT3, SQRT6 = math.sqrt(2.0), math.sqrt(3.0), math.sqrt(6.0)
PACKING_STRATEGIES = {
    "cuboid": {
        "sparse_square": (3.0, 3.0, 3.0),
        "complete_square": (2.0, 2.0, 2.0),
        "dense_square": (1.0, 1.0, 1.0),
        "densest_packing": None,
    },
    "cylinder": {
        "sparse_square": (2.0, 2.0, 2.0),
        "complete_square": (SQRT2, SQRT2, 2.0),
        "sparse_hexagonal": (SQRT3, 2.0, 2.0),
        "complete_hexagonal": (1.5, SQRT3, 2.0),
        "dense_hexagonal": (SQRT6 / 2.0, SQRT2, 1.0),
        "denser_hexagonal": (SQRT3 / 2.0, 1.0, 1.0),
        "densest_packing": None,
    },
    "sphere": {
        "sparse_simple_cubic": (2.0, 2.0, 2.0),
        "complete_simple_cubic": (0.6667 * SQRT3,) * 3,
        "dense_simple_cubic": (1.0, 1.0, 1.0),
        "sparse_face_centered_cubic": (2.0, SQRT3, 0.6667 * SQRT6),
        "complete_face_centered_cubic": (SQRT2, 0.6667 * SQRT6, 1.3333),
        "dense_face_centered_cubic": (1.0, 1.0, 1.0),
        "sparse_hexagonal": (2.0, 2.0, SQRT6),
        "complete_hexagonal": (0.6667 * SQRT3, 0.6667 * SQRT3, 1.0),
        "dense_hexagonal": (1.0, 1.0, 1.0),
        "densest_packing": None,
    },
}
# tinyBIG's axis (index into a multiplier triple) of each grid axis: volumes are (D, H, W), images (H, W), and a
# one-axis grid is a row (W).
TINYBIG_AXES = {3: (2, 0, 1), 2: (0, 1), 1: (1,)}


def per_axis(name, value, spatial_dims):
    """`value` (an int or a list / tuple of `spatial_dims` ints) as a tuple of positive ints, one per grid axis."""
    if isinstance(value, int):
        values = (value,) * spatial_dims
    elif isinstance(value, (list, tuple)):
        values = tuple(value)
    else:  # a float, a string, ...: refused below with the allowed forms
        values = ()
    if len(values) != spatial_dims or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
        raise ValueError(
            f"`{name}` must be a positive integer or a list of {spatial_dims} positive integers "
            f"(one per spatial axis, spatial_dims={spatial_dims}), got {value!r}."
        )
    return values


def packing_stride(patch_shape, patch_size, strategy):
    """The stride per axis that `strategy` gives a `patch_shape` patch of kernel `patch_size` (a tuple): tinyBIG's
    centre distance for the axis, its multiplier times the axis' half-extent `(size - 1) / 2`, truncated to an int and
    at least 1."""
    strategies = PACKING_STRATEGIES[patch_shape]
    if not isinstance(strategy, str) or strategy not in strategies:
        raise ValueError(
            f"`packing_strategy` {strategy!r} is not defined for patch_shape={patch_shape!r}; "
            f"allowed: {sorted(strategies)}."
        )
    multipliers = strategies[strategy]
    if multipliers is None:
        return (1,) * len(patch_size)
    axes = TINYBIG_AXES[len(patch_size)]
    return tuple(max(1, int(multipliers[axis] * (size - 1) / 2)) for axis, size in zip(axes, patch_size))


def patches_centred(centered, packing_strategy):
    """Whether patches are centred on their cells: `centered_patches` True, or a packing strategy given. A centred
    patch of one or two cells has no padding ((k - 1) // 2 = 0) but still the centred grid."""
    return centered is True or packing_strategy is not None


def patch_geometry(image_size, patch_size, patch_stride, packing_strategy, patch_shape, spatial_dims, centered=None):
    """Kernel, stride, padding and token-grid shape (tuples of `spatial_dims` ints) of a patch embedding; `centered`
    (default: whether a packing strategy is given) pads the image to centre each patch on its cell.

    Raises `ValueError` naming the field for a malformed field, both a stride and a packing strategy, a packing
    strategy with `centered=False`, an image smaller than a patch, or unpadded patches that would leave a border of
    the image unused.
    """
    if patch_shape not in PATCH_SHAPES:
        raise ValueError(f"`patch_shape` must be one of {list(PATCH_SHAPES)}, got {patch_shape!r}.")
    if patch_shape == "cylinder" and spatial_dims < 2:
        raise ValueError("`patch_shape='cylinder'` needs spatial_dims >= 2.")
    image = per_axis("image_size", image_size, spatial_dims)
    kernel = per_axis("patch_size", patch_size, spatial_dims)
    if patch_stride is not None and packing_strategy is not None:
        raise ValueError("Give at most one of `patch_stride` and `packing_strategy`.")
    if centered is not None and not isinstance(centered, bool):
        raise ValueError(f"`centered_patches` must be True, False or None (the default), got {centered!r}.")
    if packing_strategy is not None:
        if centered is False:
            raise ValueError(
                "A `packing_strategy` places its patches centred on their cells; `centered_patches` must be True or "
                "None with it. For unpadded patches give a `patch_stride` instead."
            )
        stride = packing_stride(patch_shape, kernel, packing_strategy)
    else:
        stride = kernel if patch_stride is None else per_axis("patch_stride", patch_stride, spatial_dims)
    centered = patches_centred(centered, packing_strategy)
    padding = tuple((k - 1) // 2 for k in kernel) if centered else (0,) * spatial_dims
    grid = []
    for axis, (n, k, s, p) in enumerate(zip(image, kernel, stride, padding)):
        if n + 2 * p < k:
            raise ValueError(f"`image_size` {image} is smaller than the patch {kernel} along axis {axis}.")
        if not centered and (n - k) % s:
            raise ValueError(
                f"`image_size` {image} does not tile with patch_size {kernel} and stride {stride} along axis "
                f"{axis}: (image_size - patch_size) must be a multiple of the stride, or the last "
                f"{(n - k) % s} pixels would be dropped. Resize the images or change patch_size / patch_stride."
            )
        grid.append((n + 2 * p - k) // s + 1)
    return kernel, stride, padding, tuple(grid)
