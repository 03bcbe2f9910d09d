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

from lib.inside.attacks import DEFAULT_MARGIN, AttackResult, SweepResult, attack, eps_sweep  # noqa: F401
from lib.inside.gradcam import GradCamResult, gradcam  # noqa: F401
from lib.inside.ideal import (  # noqa: F401
    UNREGULARISED,
    IdealResult,
    IdealSettings,
    compare_tv,
    ideal_image,
    transfer_probabilities,
)
from lib.inside.probe import ModelProbe  # noqa: F401
