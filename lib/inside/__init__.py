"""Looking inside a network: adversarial examples, ideal class images and Grad-CAM.

* `probe.ModelProbe`: one per model (shareable between threads); its logits and feature-map views,
  in public Keras only, and the compiled steps.
* `perturb`: the pieces of an attack step (budgets, projection, whole-pixel rounding, goal margin).
* `attacks`: FGSM and PGD (untargeted/targeted, L-inf/L2), judged on the whole-pixel image;
  `eps_sweep` for robust accuracy.
* `canvas`: ideal-image settings, parameterisation, regularisers and random views.
* `ideal`: regularised gradient ascent on the input (`ideal_image`), transfer to other models.
* `gradcam`: Grad-CAM heatmaps and overlays.
* `jobs`: the pages' attacks, sweeps, ideal images and Grad-CAM as `JobSpec`s (model by name,
  pixels in the uploads store), run wherever the job backend runs jobs; `results` keeps what they
  return in the job's folder (npz + JSON, no pickle) and reads it back.

Everything is pure TensorFlow, in pixel units ([0, 255]), and reports through callbacks.
"""

from lib.lazy import lazy_exports

# Each of these imports TensorFlow, so it loads at first use (PEP 562 `__getattr__`): the CLI's
# parser reads its defaults from `lib.inside.perturb` and `lib.inside.canvas` without TensorFlow.
_LAZY = {
    "lib.inside.attacks": ("DEFAULT_MARGIN", "AttackResult", "SweepResult", "attack", "eps_sweep"),
    "lib.inside.gradcam": ("GradCamResult", "gradcam"),
    "lib.inside.ideal": ("UNREGULARISED", "IdealResult", "IdealSettings", "compare_tv", "ideal_image",
                         "transfer_probabilities"),
    "lib.inside.probe": ("ModelProbe",),
}
__getattr__, __dir__ = lazy_exports(globals(), _LAZY)
