"""EfficientNet-Lite read from the shipped torch pickles: safe to read, right weights, cached."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from lib.backbones import CACHED, feature_model, get_spec, load_backbone
from lib.backbones import efficientnet_lite as lite
from lib.backbones.imagenet import imagenet_labels, resolve_class, top_k
from lib.backbones.lite import lite_cut_points
from lib.backbones.torch_pickle import LEGACY_MAGIC, load_legacy_state_dict
from lib.errors import TransferLabError
from lib.images import resize_center_crop

CAT_CLASSES = range(281, 286)  # tabby .. Egyptian cat
ESPRESSO, CUP = 967, 968


def photo(name: str, size: int) -> np.ndarray:
    """A scikit-image sample photo (bundled in the wheel), centre-cropped, float pixels."""
    img = Image.fromarray(getattr(skdata, name)())
    return np.asarray(resize_center_crop(img, size), dtype=np.float32)


class _Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_restricted_unpickler_refuses_code(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        for header in (LEGACY_MAGIC, 1001, {"little_endian": True}):
            pickle.dump(header, f, protocol=2)
        pickle.dump({"weight": _Exploit()}, f, protocol=2)
    with pytest.raises(TransferLabError, match="Refusing to load global"):
        load_legacy_state_dict(path)


def test_non_torch_file_is_refused(tmp_path):
    path = tmp_path / "plain.pth"
    path.write_bytes(pickle.dumps(42, protocol=2))
    with pytest.raises(TransferLabError, match="not a legacy PyTorch"):
        load_legacy_state_dict(path)


@pytest.mark.parametrize("name", sorted(lite.VARIANTS))
def test_registered_cut_points_match_the_shipped_weights(name):
    _, _, blocks = lite.load_lite_state(name)
    assert get_spec(name).cut_points == lite_cut_points(blocks)


def test_imagenet_labels_are_offline_and_resolve():
    labels = imagenet_labels()
    assert len(labels) == 1000 and labels[285] == "Egyptian cat"
    assert resolve_class("golden_retriever", labels) == 207
    assert resolve_class("967", labels) == ESPRESSO
    with pytest.raises(TransferLabError, match="espresso maker"):
        resolve_class("espresso mak", labels)
    assert [t["index"] for t in top_k(np.eye(1000)[3], labels, k=2)][0] == 3


@pytest.mark.large
def test_lite0_recognises_chelsea_and_coffee(lite0):
    assert lite0.pretrained
    probs = lite0.model.predict(np.stack([photo("chelsea", 224), photo("coffee", 224)]), verbose=0)
    assert int(np.argmax(probs[0])) in CAT_CLASSES
    assert {ESPRESSO, CUP} & set(np.argsort(-probs[1])[:3].tolist())


@pytest.mark.large
def test_weights_expect_tflite_input_scaling(lite0):
    """(x - 127) / 128 fits the weights better than torchvision's ImageNet mean/std.

    Feeding x' = ((x/255 - mean) / std) * 128 + 127 makes the model's own Rescaling layer compute
    the mean/std normalisation instead, so both conventions run through the same network.
    """
    images = np.stack([photo("chelsea", 224), photo("coffee", 224)])
    mean = np.array([0.485, 0.456, 0.406]) * 255
    std = np.array([0.229, 0.224, 0.225]) * 255
    as_torch = (((images - mean) / std) * lite.INPUT_STD + lite.INPUT_MEAN).astype(np.float32)

    def true_class_prob(x):
        p = lite0.model.predict(x, verbose=0)
        return p[0, list(CAT_CLASSES)].sum() + p[1, ESPRESSO]

    assert true_class_prob(images) > true_class_prob(as_torch)


@pytest.mark.large
def test_second_load_comes_from_the_cache(lite0, monkeypatch):
    assert get_spec("efficientnet_lite0").weights_status() == CACHED

    def no_torch_file(*args, **kwargs):
        raise AssertionError("the torch file was read again")

    monkeypatch.setattr(lite, "load_lite_state", no_torch_file)
    again = load_backbone("efficientnet_lite0")
    for a, b in zip(again.model.weights, lite0.model.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.large
def test_shared_backbone_is_frozen_and_cuts_work(lite0):
    assert not any(layer.trainable for layer in lite0.model.layers)
    assert feature_model(lite0, "block5c_add").output.shape[1:] == (14, 14, 112)
    with pytest.raises(TransferLabError, match="can be cut at"):
        feature_model(lite0, "not_a_layer")


@pytest.mark.large
@pytest.mark.shared_data
def test_lite0_tells_cats_from_dogs_on_real_photos(lite0, shared_datasets):
    """Summed cat vs dog ImageNet probabilities classify 40 real photos (weak but true)."""
    from lib.images import load_image

    dogs = range(151, 269)
    images, truth = [], []
    for label, folder in enumerate(["cats", "dogs"]):
        for path in sorted((shared_datasets / "cats_vs_dogs" / folder).glob("*.jpg"))[:20]:
            images.append(load_image(path, 224))
            truth.append(label)
    p = lite0.model.predict(np.stack(images), verbose=0)
    guess = (p[:, list(dogs)].sum(1) > p[:, list(CAT_CLASSES)].sum(1)).astype(int)
    assert (guess == np.array(truth)).mean() >= 0.9
