"""Raw items through ``preprocess``: what an item's row digest covers, and what it refuses."""

import io
import subprocess
import sys

import numpy as np
import pytest
import torch
from numpy.testing import assert_array_equal
from PIL import Image, ImageOps
from PIL.TiffImagePlugin import IFDRational

from sklearn_layers import LayerFeatureTransformer, MemoryCache
from sklearn_layers._extraction._digests import digest, digestible, item_digest


def small_net(n_inputs):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(n_inputs, 4))


def served_and_fresh(first, then, preprocess, n_inputs):
    """Features of ``then`` through a cache that saw ``first``, and without a cache."""
    net, cache = small_net(n_inputs), MemoryCache()
    LayerFeatureTransformer(net, layers="1", cache=cache,
                            preprocess=preprocess).fit_transform(first)
    served = LayerFeatureTransformer(net, layers="1", cache=cache,
                                     preprocess=preprocess).fit_transform(then)
    fresh = LayerFeatureTransformer(net, layers="1", cache=None,
                                    preprocess=preprocess).fit_transform(then)
    return served, fresh


# -- PIL images -----------------------------------------------------------------------


def rgba_pixels(images):
    return torch.stack([torch.from_numpy(np.asarray(im.convert("RGBA"), dtype=np.float32) / 255)
                        for im in images])


def upright_pixels(images):
    """Pixels as the camera held them: EXIF orientation applied."""
    return torch.stack([
        torch.from_numpy(np.asarray(ImageOps.exif_transpose(im).convert("L"), dtype=np.float32))
        for im in images
    ])


def palette_image(alpha):
    image = Image.new("P", (2, 2))
    image.putpalette([255, 0, 0, alpha, 0, 255, 0, 255] + [0, 0, 0, 255] * 254, rawmode="RGBA")
    image.putdata([0, 1, 1, 0])
    return image


def quantized(alpha):
    return Image.new("RGBA", (2, 2), (200, 10, 10, alpha)).quantize(colors=4)


@pytest.mark.parametrize("make", [palette_image, quantized])
def test_palettes_that_differ_only_in_alpha_are_other_rows(make):
    opaque, clear = make(255), make(40)
    assert opaque.tobytes() == clear.tobytes()  # the same indices: only the palette tells
    served, fresh = served_and_fresh([opaque], [clear], rgba_pixels, 16)
    assert_array_equal(served, fresh)
    assert not np.allclose(served, LayerFeatureTransformer(
        small_net(16), layers="1", cache=None, preprocess=rgba_pixels).fit_transform([opaque]))


def png(orientation=None, **info):
    image = Image.new("L", (2, 2))
    image.putdata([0, 50, 100, 250])
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, "PNG", exif=exif.tobytes(), **info)
    buffer.seek(0)
    return Image.open(buffer)


def test_exif_orientation_is_part_of_an_images_key():
    served, fresh = served_and_fresh([png(1)], [png(3)], upright_pixels, 4)  # 3: turned 180
    assert_array_equal(served, fresh)
    unturned = LayerFeatureTransformer(small_net(4), layers="1", cache=None,
                                       preprocess=upright_pixels).fit_transform([png(1)])
    assert not np.allclose(served, unturned)


def test_an_exif_edited_in_memory_is_part_of_the_key():
    turned = png(1)
    turned.getexif()[0x0112] = 3  # what exif_transpose reads, not what the file held
    assert item_digest(turned) != item_digest(png(1))
    served, fresh = served_and_fresh([png(1)], [turned], upright_pixels, 4)
    assert_array_equal(served, fresh)


def test_an_images_info_is_part_of_its_key():
    plain = png()
    assert item_digest(plain) == item_digest(png())
    assert item_digest(png(icc_profile=b"A")) != item_digest(png(icc_profile=b"B"))
    assert item_digest(png(dpi=(72, 72))) != item_digest(png(dpi=(300, 300)))
    noted = png()
    noted.info["note"] = {"b": [1, 2.5], "a": b"\x00"}
    assert item_digest(noted) != item_digest(plain)


@pytest.mark.parametrize("one, other", [
    (IFDRational(72, 1), IFDRational(145, 2)),  # dpi read from EXIF
    (IFDRational(72.25), IFDRational(72.5)),
    (np.int64(1), np.int64(2)),
    (np.float32(0.5), np.float32(0.25)),
    (np.str_("sRGB"), np.str_("P3")),
    ({"a", "b"}, {"a", "c"}),
])
def test_info_values_beyond_builtins_are_keyed_by_value(one, other):
    images = [png(), png()]
    for image, value in zip(images, (one, other)):
        image.info["value"] = value
    assert item_digest(images[0]) != item_digest(images[1])


def test_reading_an_images_exif_for_its_key_leaves_the_image_as_it_was():
    image = png(3)
    image.load()
    before = (image._exif, dict(image.info), image.tobytes())
    item_digest(image)
    assert (image._exif, dict(image.info), image.tobytes()) == before
    assert image.getexif()[0x0112] == 3


DIGEST_IN_A_PROCESS = """
import io
from PIL import Image
from sklearn_layers._extraction._digests import item_digest
image = Image.new("L", (2, 2))
exif = Image.Exif(); exif[0x0112] = 6
buffer = io.BytesIO(); image.save(buffer, "PNG", exif=exif.tobytes(), dpi=(72, 72))
image = Image.open(buffer)
image.info.update(note={"b": 1, "a": {"x", "y", "z"}}, handle=object(), kinds=frozenset("abc"))
print(item_digest(image).hex())
"""


def test_an_images_key_is_the_same_in_every_process():
    # an info value that is not plain data is keyed by its type, never by a repr
    # holding its address; sets by their sorted members, not their hash order
    digests = {
        subprocess.run([sys.executable, "-c", DIGEST_IN_A_PROCESS], capture_output=True,
                       text=True, check=True, env={"PYTHONHASHSEED": seed,
                                                   "PYTHONPATH": ":".join(sys.path)}).stdout
        for seed in ("1", "2")
    }
    assert len(digests) == 1 and len(digests.pop().strip()) == 32


# -- arrays ---------------------------------------------------------------------------


def filled(items):
    """Masked (missing) values become 0."""
    return torch.tensor(np.stack([np.ma.filled(it.astype(np.float32), 0.0) for it in items]))


def lengths(items):
    return torch.tensor([[float(len(s)) for s in it] for it in items])


def fields_xy(records):
    return torch.tensor(np.stack([np.stack([r["x"], r["y"]], axis=-1) for r in records]),
                        dtype=torch.float32)


def test_masked_arrays_are_computed_every_time_not_keyed_without_their_mask():
    data = np.array([1.0, 2.0, 3.0, 4.0])
    complete = np.ma.MaskedArray(data, mask=[0, 0, 0, 0])
    gappy = np.ma.MaskedArray(data, mask=[0, 1, 0, 1])
    assert not digestible(gappy) and item_digest(gappy) is None
    served, fresh = served_and_fresh([complete], [gappy], filled, 4)
    assert_array_equal(served, fresh)


def test_subclasses_of_arrays_and_tensors_are_not_digestible():
    class Tagged(torch.Tensor):
        pass

    assert not digestible(torch.zeros(3).as_subclass(Tagged))
    assert not digestible(np.zeros(3).view(np.recarray))
    assert digestible(np.zeros(3)) and digestible(torch.zeros(3))
    assert digestible(torch.nn.Parameter(torch.zeros(3)))


def test_object_arrays_are_computed_every_time_not_a_crash_of_the_cache():
    items = [np.array(["ab", "cde"], dtype=object), np.array(["x", "yz"], dtype=object)]
    assert not digestible(items[0])
    net = small_net(2)
    cached = LayerFeatureTransformer(net, layers="1", cache=MemoryCache(),
                                     preprocess=lengths).fit_transform(items)
    fresh = LayerFeatureTransformer(net, layers="1", cache=None,
                                    preprocess=lengths).fit_transform(items)
    assert_array_equal(cached, fresh)


def test_structured_arrays_are_keyed_by_their_field_names():
    values = np.array([(1.0, 5.0), (2.0, 7.0)])
    xy = np.rec.fromarrays(values.T, dtype=[("x", "<f8"), ("y", "<f8")]).view(np.ndarray)
    yx = np.rec.fromarrays(values.T, dtype=[("y", "<f8"), ("x", "<f8")]).view(np.ndarray)
    assert xy.dtype.str == yx.dtype.str and xy.tobytes() == yx.tobytes()
    served, fresh = served_and_fresh([xy], [yx], fields_xy, 4)
    assert_array_equal(served, fresh)


def test_a_plain_arrays_key_is_what_it_was():
    # dtype, shape and bytes, under the dtype's str: keys written before stay valid
    item = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert item_digest(item) == digest(b"array|<f4|(2, 3)|", item.tobytes())


def test_a_conjugate_tensor_is_keyed_by_its_values():
    values = torch.tensor([1 + 2j, 3 - 1j])
    lazy = values.conj()  # a view with the conjugate bit set, as torch hands it out
    assert lazy.is_conj()
    assert item_digest(lazy) == item_digest(lazy.resolve_conj())
    assert item_digest(lazy) != item_digest(values)
