"""The specs (`SPECS`) of every family in the Keras Applications table, built to the registry contract.

Each entry wraps one `keras.applications` constructor so that it looks like every other backbone:

* the input is float32 pixels in [0, 255]; the family's `preprocess_input` is rebuilt from standard,
  weightless Keras layers (`Rescaling`, `Normalization` with fixed statistics, or `Identity` where the
  application already normalises inside), so `model.keras` loads in safe mode with no Lambda layer;
* 'caffe' models (VGG, ResNet v1) were trained on BGR inputs. Instead of a channel-swapping layer,
  the swap is folded into the first convolution's kernel after the weights load (reversing its input
  channels), which is exact, and keeps the graph free of extra weighted layers: the Keras `.h5` files
  load by the order of weighted layers, so an extra one would break loading;
* the application's classifier (a Dense, or a 1x1 Conv2D on a 1x1 map) becomes a Dense `logits`
  with the same weights, followed by a softmax `probabilities`;
* cut points are the ends of stages (names from a `weights=None` build, written out below so the
  registry never builds 40 models on import); two families leave their final feature map unnamed
  (MobileNetV3, NASNet), and the builder names it `top_activation`.

Weights come from the Keras cache (`$KERAS_HOME/models`, default `~/.keras/models`) or a download.
Offline and uncached, asking for pretrained weights raises `TransferLabError` at once (one ~0.1 s
connectivity probe, no hanging download), so `load_backbone(allow_random=True)` can fall back to
random weights for size and latency; those must be shown as not pretrained.
"""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from lib.backbones.spec import CACHED, DOWNLOAD_NEEDED, BackboneSpec
from lib.errors import TransferLabError
from lib.lazy import lazy_module
from lib.net import OFFLINE_ENV, reachable  # noqa: F401  (OFFLINE_ENV re-exported)

keras = lazy_module("keras")  # imported at first use (see lib.lazy)

WEIGHTS_HOST = "storage.googleapis.com"  # every Keras Applications weights file is served from here
PROBE_TIMEOUT_S = 2.0
DOWNLOAD_TIMEOUT_S = 30.0  # per socket operation, so a stalled download fails instead of hanging

KERAS_TABLE_SOURCE = "keras.io/api/applications, 'Available models' table (ImageNet validation)"
MOBILENET_V3_SOURCE = "keras.applications.MobileNetV3 docs, checkpoint table (top-1 only)"

# ImageNet means and deviations used by `keras.applications.imagenet_utils.preprocess_input`.
CAFFE_MEAN_RGB = (123.68, 116.779, 103.939)
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)

PREPROCESSING = {
    "tf": "x / 127.5 - 1",
    "caffe": "x - [123.68, 116.78, 103.94] (RGB means); the RGB->BGR swap is folded into the first conv",
    "torch": "(x / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]",
    "included": "inside the Keras application itself (it takes 0-255 pixels)",
}


@dataclass(frozen=True)
class _App:
    """One Keras application: constructor name, registry key, and what the registry shows."""

    constructor: str
    key: str
    family: str
    input_size: int
    mode: str  # "tf" | "caffe" | "torch" | "included", as in `imagenet_utils.preprocess_input`
    top1: float | None
    top5: float | None
    weights_file: str  # the include_top=True file name that `keras.utils.get_file` caches
    feature_dim: int
    cut_points: tuple[str, ...]


# Accuracy: keras.io/api/applications table (MobileNetV3: its own docs). Cut points and feature
# dimensions: read from `weights=None` builds with Keras 3.15 (see the module docstring).
APPS: tuple[_App, ...] = (
    _App('MobileNet', 'mobilenet', 'MobileNet', 224, 'tf', 70.4, 89.5, 'mobilenet_1_0_224_tf.h5', 1024,
         ('conv1_relu', 'conv_pw_1_relu', 'conv_pw_3_relu', 'conv_pw_5_relu', 'conv_pw_11_relu', 'conv_pw_13_relu')),
    _App('MobileNetV2', 'mobilenet_v2', 'MobileNet', 224, 'tf', 71.3, 90.1, 'mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5', 1280,
         ('Conv1_relu', 'expanded_conv_project_BN', 'block_2_add', 'block_5_add', 'block_9_add', 'block_12_add', 'block_15_add', 'block_16_project_BN', 'out_relu')),
    _App('MobileNetV3Small', 'mobilenet_v3_small', 'MobileNet', 224, 'included', 68.1, None, 'weights_mobilenet_v3_small_224_1.0_float.h5', 576,
         ('expanded_conv_project_bn', 'expanded_conv_1_project_bn', 'expanded_conv_2_add', 'expanded_conv_3_project_bn', 'expanded_conv_4_add', 'expanded_conv_5_add', 'expanded_conv_6_project_bn', 'expanded_conv_7_add', 'expanded_conv_8_project_bn', 'expanded_conv_9_add', 'expanded_conv_10_add', 'top_activation')),
    _App('MobileNetV3Large', 'mobilenet_v3_large', 'MobileNet', 224, 'included', 75.6, None, 'weights_mobilenet_v3_large_224_1.0_float.h5', 960,
         ('expanded_conv_add', 'expanded_conv_1_project_bn', 'expanded_conv_2_add', 'expanded_conv_3_project_bn', 'expanded_conv_4_add', 'expanded_conv_5_add', 'expanded_conv_6_project_bn', 'expanded_conv_7_add', 'expanded_conv_8_add', 'expanded_conv_9_add', 'expanded_conv_10_project_bn', 'expanded_conv_11_add', 'expanded_conv_12_project_bn', 'expanded_conv_13_add', 'expanded_conv_14_add', 'top_activation')),
    _App('EfficientNetB0', 'efficientnet_b0', 'EfficientNet', 224, 'included', 77.1, 93.3, 'efficientnetb0.h5', 1280,
         ('stem_activation', 'block1a_project_bn', 'block2b_add', 'block3b_add', 'block4c_add', 'block5c_add', 'block6d_add', 'block7a_project_bn', 'top_activation')),
    _App('EfficientNetB1', 'efficientnet_b1', 'EfficientNet', 240, 'included', 79.1, 94.4, 'efficientnetb1.h5', 1280,
         ('stem_activation', 'block1b_add', 'block2c_add', 'block3c_add', 'block4d_add', 'block5d_add', 'block6e_add', 'block7b_add', 'top_activation')),
    _App('EfficientNetB2', 'efficientnet_b2', 'EfficientNet', 260, 'included', 80.1, 94.9, 'efficientnetb2.h5', 1408,
         ('stem_activation', 'block1b_add', 'block2c_add', 'block3c_add', 'block4d_add', 'block5d_add', 'block6e_add', 'block7b_add', 'top_activation')),
    _App('EfficientNetB3', 'efficientnet_b3', 'EfficientNet', 300, 'included', 81.6, 95.7, 'efficientnetb3.h5', 1536,
         ('stem_activation', 'block1b_add', 'block2c_add', 'block3c_add', 'block4e_add', 'block5e_add', 'block6f_add', 'block7b_add', 'top_activation')),
    _App('EfficientNetB4', 'efficientnet_b4', 'EfficientNet', 380, 'included', 82.9, 96.4, 'efficientnetb4.h5', 1792,
         ('stem_activation', 'block1b_add', 'block2d_add', 'block3d_add', 'block4f_add', 'block5f_add', 'block6h_add', 'block7b_add', 'top_activation')),
    _App('EfficientNetB5', 'efficientnet_b5', 'EfficientNet', 456, 'included', 83.6, 96.7, 'efficientnetb5.h5', 2048,
         ('stem_activation', 'block1c_add', 'block2e_add', 'block3e_add', 'block4g_add', 'block5g_add', 'block6i_add', 'block7c_add', 'top_activation')),
    _App('EfficientNetB6', 'efficientnet_b6', 'EfficientNet', 528, 'included', 84.0, 96.8, 'efficientnetb6.h5', 2304,
         ('stem_activation', 'block1c_add', 'block2f_add', 'block3f_add', 'block4h_add', 'block5h_add', 'block6k_add', 'block7c_add', 'top_activation')),
    _App('EfficientNetB7', 'efficientnet_b7', 'EfficientNet', 600, 'included', 84.3, 97.0, 'efficientnetb7.h5', 2560,
         ('stem_activation', 'block1d_add', 'block2g_add', 'block3g_add', 'block4j_add', 'block5j_add', 'block6m_add', 'block7d_add', 'top_activation')),
    _App('EfficientNetV2B0', 'efficientnet_v2_b0', 'EfficientNetV2', 224, 'included', 78.7, 94.3, 'efficientnetv2-b0.h5', 1280,
         ('stem_activation', 'block1a_project_bn', 'block2b_add', 'block3b_add', 'block4c_add', 'block5e_add', 'block6h_add', 'top_activation')),
    _App('EfficientNetV2B1', 'efficientnet_v2_b1', 'EfficientNetV2', 240, 'included', 79.8, 95.0, 'efficientnetv2-b1.h5', 1280,
         ('stem_activation', 'block1b_add', 'block2c_add', 'block3c_add', 'block4d_add', 'block5f_add', 'block6i_add', 'top_activation')),
    _App('EfficientNetV2B2', 'efficientnet_v2_b2', 'EfficientNetV2', 260, 'included', 80.5, 95.1, 'efficientnetv2-b2.h5', 1408,
         ('stem_activation', 'block1b_add', 'block2c_add', 'block3c_add', 'block4d_add', 'block5f_add', 'block6j_add', 'top_activation')),
    _App('EfficientNetV2B3', 'efficientnet_v2_b3', 'EfficientNetV2', 300, 'included', 82.0, 95.8, 'efficientnetv2-b3.h5', 1536,
         ('stem_activation', 'block1b_add', 'block2c_add', 'block3c_add', 'block4e_add', 'block5g_add', 'block6l_add', 'top_activation')),
    _App('EfficientNetV2S', 'efficientnet_v2_s', 'EfficientNetV2', 384, 'included', 83.9, 96.7, 'efficientnetv2-s.h5', 1280,
         ('stem_activation', 'block1b_add', 'block2d_add', 'block3d_add', 'block4f_add', 'block5i_add', 'block6o_add', 'top_activation')),
    _App('EfficientNetV2M', 'efficientnet_v2_m', 'EfficientNetV2', 480, 'included', 85.3, 97.4, 'efficientnetv2-m.h5', 1280,
         ('stem_activation', 'block1c_add', 'block2e_add', 'block3e_add', 'block4g_add', 'block5n_add', 'block6r_add', 'block7e_add', 'top_activation')),
    _App('EfficientNetV2L', 'efficientnet_v2_l', 'EfficientNetV2', 480, 'included', 85.7, 97.5, 'efficientnetv2-l.h5', 1280,
         ('stem_activation', 'block1d_add', 'block2g_add', 'block3g_add', 'block4j_add', 'block5s_add', 'block6y_add', 'block7g_add', 'top_activation')),
    _App('ResNet50', 'resnet50', 'ResNet', 224, 'caffe', 74.9, 92.1, 'resnet50_weights_tf_dim_ordering_tf_kernels.h5', 2048,
         ('conv1_relu', 'conv2_block3_out', 'conv3_block4_out', 'conv4_block6_out', 'conv5_block3_out')),
    _App('ResNet101', 'resnet101', 'ResNet', 224, 'caffe', 76.4, 92.8, 'resnet101_weights_tf_dim_ordering_tf_kernels.h5', 2048,
         ('conv1_relu', 'conv2_block3_out', 'conv3_block4_out', 'conv4_block23_out', 'conv5_block3_out')),
    _App('ResNet152', 'resnet152', 'ResNet', 224, 'caffe', 76.6, 93.1, 'resnet152_weights_tf_dim_ordering_tf_kernels.h5', 2048,
         ('conv1_relu', 'conv2_block3_out', 'conv3_block8_out', 'conv4_block36_out', 'conv5_block3_out')),
    _App('ResNet50V2', 'resnet50_v2', 'ResNetV2', 224, 'tf', 76.0, 93.0, 'resnet50v2_weights_tf_dim_ordering_tf_kernels.h5', 2048,
         ('pool1_pool', 'conv2_block3_out', 'conv3_block4_out', 'conv4_block6_out', 'post_relu')),
    _App('ResNet101V2', 'resnet101_v2', 'ResNetV2', 224, 'tf', 77.2, 93.8, 'resnet101v2_weights_tf_dim_ordering_tf_kernels.h5', 2048,
         ('pool1_pool', 'conv2_block3_out', 'conv3_block4_out', 'conv4_block23_out', 'post_relu')),
    _App('ResNet152V2', 'resnet152_v2', 'ResNetV2', 224, 'tf', 78.0, 94.2, 'resnet152v2_weights_tf_dim_ordering_tf_kernels.h5', 2048,
         ('pool1_pool', 'conv2_block3_out', 'conv3_block8_out', 'conv4_block36_out', 'post_relu')),
    _App('InceptionV3', 'inception_v3', 'Inception', 299, 'tf', 77.9, 93.7, 'inception_v3_weights_tf_dim_ordering_tf_kernels.h5', 2048,
         ('mixed0', 'mixed1', 'mixed2', 'mixed3', 'mixed4', 'mixed5', 'mixed6', 'mixed7', 'mixed8', 'mixed9', 'mixed10')),
    _App('InceptionResNetV2', 'inception_resnet_v2', 'Inception', 299, 'tf', 80.3, 95.3, 'inception_resnet_v2_weights_tf_dim_ordering_tf_kernels.h5', 1536,
         ('mixed_5b', 'block35_10_ac', 'mixed_6a', 'block17_20_ac', 'mixed_7a', 'block8_9_ac', 'conv_7b_ac')),
    _App('Xception', 'xception', 'Xception', 299, 'tf', 79.0, 94.5, 'xception_weights_tf_dim_ordering_tf_kernels.h5', 2048,
         ('block1_conv2_act', 'block3_sepconv1_act', 'block4_sepconv1_act', 'block5_sepconv1_act', 'block13_sepconv1_act', 'block14_sepconv2_act')),
    _App('VGG16', 'vgg16', 'VGG', 224, 'caffe', 71.3, 90.1, 'vgg16_weights_tf_dim_ordering_tf_kernels.h5', 512,
         ('block1_pool', 'block2_pool', 'block3_pool', 'block4_pool', 'block5_pool')),
    _App('VGG19', 'vgg19', 'VGG', 224, 'caffe', 71.3, 90.0, 'vgg19_weights_tf_dim_ordering_tf_kernels.h5', 512,
         ('block1_pool', 'block2_pool', 'block3_pool', 'block4_pool', 'block5_pool')),
    _App('DenseNet121', 'densenet121', 'DenseNet', 224, 'torch', 75.0, 92.3, 'densenet121_weights_tf_dim_ordering_tf_kernels.h5', 1024,
         ('conv1_relu', 'conv2_block6_concat', 'conv3_block12_concat', 'conv4_block24_concat', 'relu')),
    _App('DenseNet169', 'densenet169', 'DenseNet', 224, 'torch', 76.2, 93.2, 'densenet169_weights_tf_dim_ordering_tf_kernels.h5', 1664,
         ('conv1_relu', 'conv2_block6_concat', 'conv3_block12_concat', 'conv4_block32_concat', 'relu')),
    _App('DenseNet201', 'densenet201', 'DenseNet', 224, 'torch', 77.3, 93.6, 'densenet201_weights_tf_dim_ordering_tf_kernels.h5', 1920,
         ('conv1_relu', 'conv2_block6_concat', 'conv3_block12_concat', 'conv4_block48_concat', 'relu')),
    _App('NASNetMobile', 'nasnet_mobile', 'NASNet', 224, 'tf', 74.4, 91.9, 'nasnet_mobile.h5', 1056,
         ('reduction_concat_stem_2', 'reduction_concat_reduce_4', 'reduction_concat_reduce_8', 'top_activation')),
    _App('NASNetLarge', 'nasnet_large', 'NASNet', 331, 'tf', 82.5, 96.0, 'nasnet_large.h5', 4032,
         ('reduction_concat_stem_2', 'reduction_concat_reduce_6', 'reduction_concat_reduce_12', 'top_activation')),
    _App('ConvNeXtTiny', 'convnext_tiny', 'ConvNeXt', 224, 'included', 81.3, None, 'convnext_tiny.h5', 768,
         ('convnext_tiny_stem', 'convnext_tiny_downsampling_block_0', 'convnext_tiny_downsampling_block_1', 'convnext_tiny_downsampling_block_2', 'convnext_tiny_head_layernorm')),
    _App('ConvNeXtSmall', 'convnext_small', 'ConvNeXt', 224, 'included', 82.3, None, 'convnext_small.h5', 768,
         ('convnext_small_stem', 'convnext_small_downsampling_block_0', 'convnext_small_downsampling_block_1', 'convnext_small_downsampling_block_2', 'convnext_small_head_layernorm')),
    _App('ConvNeXtBase', 'convnext_base', 'ConvNeXt', 224, 'included', 85.3, None, 'convnext_base.h5', 1024,
         ('convnext_base_stem', 'convnext_base_downsampling_block_0', 'convnext_base_downsampling_block_1', 'convnext_base_downsampling_block_2', 'convnext_base_head_layernorm')),
    _App('ConvNeXtLarge', 'convnext_large', 'ConvNeXt', 224, 'included', 86.3, None, 'convnext_large.h5', 1536,
         ('convnext_large_stem', 'convnext_large_downsampling_block_0', 'convnext_large_downsampling_block_1', 'convnext_large_downsampling_block_2', 'convnext_large_head_layernorm')),
    _App('ConvNeXtXLarge', 'convnext_xlarge', 'ConvNeXt', 224, 'included', 86.7, None, 'convnext_xlarge.h5', 2048,
         ('convnext_xlarge_stem', 'convnext_xlarge_downsampling_block_0', 'convnext_xlarge_downsampling_block_1', 'convnext_xlarge_downsampling_block_2', 'convnext_xlarge_head_layernorm')),
)

APPS_BY_KEY = {app.key: app for app in APPS}


def keras_home() -> Path:
    """The Keras home folder that `keras.utils.get_file` uses: `$KERAS_HOME`, else `~/.keras`."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser()


def keras_models_dirs() -> list[Path]:
    """Where `keras.utils.get_file` caches application weights.

    Keras uses `<keras home>/models`, or `/tmp/.keras/models` when the home folder is not writable
    (or does not exist), exactly as `get_file` decides.
    """
    home = keras_home()
    base = home if os.access(home, os.W_OK) else Path("/tmp/.keras")
    return [base / "models"]


def cached_weights_path(app: _App) -> Path | None:
    """Returns the cached ImageNet weights file of `app`, or None when it is not on disk."""
    for folder in keras_models_dirs():
        path = folder / app.weights_file
        if path.is_file() and path.stat().st_size > 0:
            return path
    return None


def weights_status(app: _App) -> str:
    """`cached` when the weights file is in the Keras cache, else `download needed`."""
    return CACHED if cached_weights_path(app) else DOWNLOAD_NEEDED


def network_reachable(host: str = WEIGHTS_HOST, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """True when the weights host answers; never tried when `TRANSFERLAB_OFFLINE=1`."""
    return reachable(host, timeout)


def offline_message(app: _App) -> str:
    """The message for a person whose machine cannot get `app`'s weights."""
    folder = keras_models_dirs()[0]
    return (
        f"The ImageNet weights of `{app.key}` are not available offline: `{app.weights_file}` is not "
        f"in {folder} and {WEIGHTS_HOST} cannot be reached. Run once with internet access (for example "
        f"`python -m lib predict --backbone {app.key} IMAGE`, which downloads it there), or copy the "
        f"file into {folder} from a machine that has it. Until then only random weights are possible."
    )


@contextlib.contextmanager
def _socket_timeout(seconds: float):
    # `urllib.request.urlretrieve` (used by `get_file`) has no timeout argument; the process-wide
    # default is the only knob, so it is set for the download and restored after.
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _preprocess(mode: str, pixels):
    """Applies the family's input scaling to a (B, S, S, 3) pixel tensor with weightless layers."""
    if mode == "tf":
        return keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess")(pixels)
    if mode == "caffe":
        return keras.layers.Normalization(
            mean=list(CAFFE_MEAN_RGB), variance=[1.0, 1.0, 1.0], name="preprocess"
        )(pixels)
    if mode == "torch":
        mean = [255.0 * m for m in TORCH_MEAN]
        variance = [(255.0 * s) ** 2 for s in TORCH_STD]
        return keras.layers.Normalization(mean=mean, variance=variance, name="preprocess")(pixels)
    if mode == "included":
        return keras.layers.Identity(name="preprocess")(pixels)
    raise ValueError(f"Received `mode={mode}`; expected tf, caffe, torch or included.")


def _fold_bgr_into_first_conv(model: keras.Model) -> None:
    """Reverses the input channels of the first Conv2D, so the model takes RGB where it learnt BGR.

    conv(bgr(x)) == conv'(x) with conv' = conv with its kernel's input-channel axis reversed; zero
    padding before the conv commutes with the swap, so this is exact.
    """
    conv = next(layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
    kernel, *rest = conv.get_weights()  # kernel: (kh, kw, 3, filters)
    conv.set_weights([kernel[:, :, ::-1, :].copy(), *rest])


def _name_final_map(app_model: keras.Model) -> None:
    """Names the unnamed layer feeding the final global pooling `top_activation` (MobileNetV3, NASNet)."""
    pools = [layer for layer in app_model.layers if isinstance(layer, keras.layers.GlobalAveragePooling2D)]
    feeding = pools[-1].input
    source = next(layer for layer in app_model.layers if layer.output is feeding)
    source.name = "top_activation"


def _logits_head(app_model: keras.Model):
    """Returns the `probabilities` tensor: a Dense `logits` copying the application's classifier."""
    classifier = [layer for layer in app_model.layers if layer.weights][-1]
    features = classifier.input
    if len(features.shape) == 4:  # MobileNet v1/v3: a 1x1 conv on a (B, 1, 1, C) pooled map
        features = keras.layers.Flatten(name="pooled")(features)
    kernel, bias = classifier.get_weights()
    kernel = kernel.reshape(-1, kernel.shape[-1])  # (1, 1, C, K) -> (C, K); Dense kernels pass through
    logits_layer = keras.layers.Dense(kernel.shape[-1], name="logits")
    logits = logits_layer(features)
    logits_layer.set_weights([kernel, bias])
    return keras.layers.Activation("softmax", name="probabilities")(logits)


def _construct(app: _App, pixels, weights: str | None) -> keras.Model:
    """Calls the Keras constructor on `preprocess(pixels)`, so the graph starts at our input.

    The application loads (or downloads) its `.h5` itself; our preprocessing layers hold no
    weights, so its order-based loading still lines up.
    """
    constructor = getattr(keras.applications, app.constructor)
    x = _preprocess(app.mode, pixels)
    size = app.input_size
    try:
        return constructor(
            include_top=True, weights=weights, input_tensor=x, input_shape=(size, size, 3),
            classifier_activation=None,
        )
    except TransferLabError:
        raise
    except Exception as e:  # noqa: BLE001  a failed download surfaces as many exception types
        if weights is None:
            raise
        raise TransferLabError(f"{offline_message(app)} (download failed: {e})") from e


def build_application(key: str, pretrained: bool) -> keras.Model:
    """Builds one Keras application to the registry contract.

    Args:
        key: registry key, e.g. `"mobilenet_v2"`.
        pretrained: load the ImageNet weights (from the Keras cache, else a download). False gives
            the same architecture with random weights.

    Returns:
        pixels (B, S, S, 3) in [0, 255] -> `preprocess` -> application -> `logits` -> `probabilities`.

    Raises:
        TransferLabError: unknown key, or pretrained weights that cannot be had (offline, uncached).
    """
    if key not in APPS_BY_KEY:
        raise TransferLabError(f"Received `key={key}`; Keras applications are: {', '.join(APPS_BY_KEY)}.")
    app = APPS_BY_KEY[key]
    weights = None
    if pretrained:
        if not cached_weights_path(app) and not network_reachable():
            raise TransferLabError(offline_message(app))
        weights = "imagenet"
    pixels = keras.Input((app.input_size, app.input_size, 3), name="pixels")
    with _socket_timeout(DOWNLOAD_TIMEOUT_S):
        app_model = _construct(app, pixels, weights)
    if app.cut_points[-1] == "top_activation":
        _name_final_map(app_model)
    if pretrained and app.mode == "caffe":
        _fold_bgr_into_first_conv(app_model)
    probabilities = _logits_head(app_model)
    return keras.Model(pixels, probabilities, name=app_model.name)


def _spec(app: _App) -> BackboneSpec:
    source = MOBILENET_V3_SOURCE if app.constructor.startswith("MobileNetV3") else KERAS_TABLE_SOURCE
    return BackboneSpec(
        name=app.key,
        family=app.family,
        builder=lambda pretrained, k=app.key: build_application(k, pretrained),
        input_size=app.input_size,
        preprocessing=PREPROCESSING[app.mode],
        feature_dim=app.feature_dim,
        cut_points=app.cut_points,
        weights_source="keras:imagenet",
        weights_status=lambda a=app: weights_status(a),
        top1=app.top1,
        top5=app.top5,
        accuracy_source=source,
    )


SPECS: tuple[BackboneSpec, ...] = tuple(_spec(app) for app in APPS)
