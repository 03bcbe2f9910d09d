"""Real EfficientNet-Lite0: an adversarial cat becomes a dog, the ideal espresso is an espresso."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lib.backbones.imagenet import imagenet_labels
from lib.images import resize_center_crop
from lib.inside.attacks import attack
from lib.inside.gradcam import gradcam
from lib.inside.ideal import IdealSettings, ideal_image
from lib.inside.probe import ModelProbe

pytestmark = pytest.mark.large

GOLDEN_RETRIEVER = 207
ESPRESSO = 967
CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(scope="module")
def lite0_probe(lite0) -> ModelProbe:
    return ModelProbe(lite0.model, imagenet_labels())


@pytest.fixture(scope="module")
def chelsea() -> np.ndarray:
    from skimage import data

    return np.asarray(resize_center_crop(Image.fromarray(data.chelsea()), 224), np.float32)


def test_targeted_pgd_turns_chelsea_into_a_golden_retriever(lite0_probe, chelsea):
    result = attack(lite0_probe, chelsea, method="pgd", eps=8, steps=10, target=GOLDEN_RETRIEVER)
    assert result.before[0]["index"] in CAT_CLASSES
    assert result.success and result.after[0]["index"] == GOLDEN_RETRIEVER
    assert result.linf <= 8


def test_ideal_espresso_convinces_lite0(lite0_probe):
    result = ideal_image(lite0_probe, ESPRESSO, IdealSettings(steps=40, frame_every=0))
    assert result.prob >= 0.9


def test_gradcam_explains_a_cat_class_on_chelsea(lite0_probe, chelsea):
    result = gradcam(lite0_probe, chelsea)
    assert result.class_index in CAT_CLASSES
    assert result.heatmap.shape == (7, 7) and result.heatmap.max() == pytest.approx(1.0)
