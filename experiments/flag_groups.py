"""The one configuration language of the experiments: flag groups, one name per concept.

Every training script defines its flags by calling the groups it uses (with
its own defaults); a concept has the same name everywhere:

* run (`launch.define_common_flags`): --workdir --seed --num_steps
  --batch_size --log_every --checkpoint_every --sample_every
  --keep_checkpoints --num_devices --skip_nonfinite --max_skipped_fraction
  --tensorboard --allow_flag_changes and the multi-process flags;
* `image_data`: --dataset --data_dir --split --image_size --channels
  --convert_data;
* `model_size`: --generator --discriminator (registry names) --g_widths
  --d_widths (lists: the hidden widths of an MLP, or one number, the base
  channel count of a convolutional network);
* `optimizer`: --optimizer --lr --d_lr --b1 --b2 --lr_schedule --decay_start
  (a fraction of the run, for every schedule) --clip_value;
* `adversarial`: --loss --real_label --n_critic --n_gen and the penalties
  --gp_weight --r1_weight --r1_every --dragan_weight --bcr_weight
  --lecam_weight --lecam_decay (--ac_weight for class-conditional families);
* `discriminator_options`: --spectral_norm --diffaugment;
* `latent`: --latent_dim --latent_dist --ema_decay --pack;
* `evaluation`: --eval_samples --grid_size --eval_every --best_metric
  --classifier_workdir;
* `translation` (Pix2Pix, CycleGAN): --mode --direction --patch_size
  --jitter --jitter_size --jitter_method --flip --strip_scale --eval_batch
  --input_dir --output_dir.

A script calls only the groups (and the options of a group) it reads.
`launch.run` makes every flag of these groups a key flag of the script, so
``--help`` lists exactly the flags the script reads (``--helpfull`` adds
absl's, grain's, orbax's and tfds' own).

Flag files compose: a flag file may start with ``--flagfile=`` of a base file
and override some of its flags below it (the last value wins), e.g.
``experiments/flags/wgan_gp_ring8.flags`` is the grid recipe with another
dataset, batch, width and length. A nested ``--flagfile=`` is looked up from
the working directory and then beside the including file
(`launch.expand_flagfiles`), so overlays work from any directory.
"""

from __future__ import annotations

from collections.abc import Sequence

from absl import flags

from jaxgan import losses, optimizers
from jaxgan.augment import DIFFAUGMENT_OPS, JITTER_METHODS
from jaxgan.families import cyclegan, gan
from jaxgan.models.pix2pix import PATCH_SIZES

WIDTHS_HELP = "(empty: the model's defaults; lists are hidden widths of an MLP, one number a convolutional base width)"


def image_data(default_dataset: str = "digits", splits: bool = True, convert: bool = True) -> None:
  flags.DEFINE_string(
    "dataset",
    default_dataset,
    "digits (offline, 8x8), mnist, fashion_mnist, cifar10, svhn_cropped, celeb_a (64x64), stacked_<base>, any TFDS "
    "image dataset name, a .npz file (uint8 images, or float in [0, 1], or [-1, 1] when any value is negative) or "
    "an image folder.",
  )
  flags.DEFINE_string("data_dir", None, "TFDS data directory holding the prepared dataset (never downloaded into).")
  if splits:
    flags.DEFINE_string("split", "train", "Split to train on.")
  if convert:
    flags.DEFINE_integer("image_size", 0, "Model image height = width (0: the data's).", lower_bound=0)
    flags.DEFINE_integer("channels", 0, "Model image channels, 1 or 3 (0: the data's).", lower_bound=0)
    flags.DEFINE_bool(
      "convert_data",
      False,
      "Resize (mixed sizes too) / convert the data's channels to --image_size and --channels instead of stopping "
      "when they differ.",
    )


def model_size(
  generators: Sequence[str] | None = None,
  discriminators: Sequence[str] | None = None,
  generator: str | None = None,
  discriminator: str | None = None,
  widths_help: str = WIDTHS_HELP,
  g_help: str | None = None,
  d_help: str | None = None,
) -> None:
  """--generator / --discriminator (registry names, when the script has a registry) and --g_widths / --d_widths."""
  if generators is not None:
    flags.DEFINE_enum("generator", generator, sorted(generators), "Generator (registry name).")
  if discriminators is not None:
    flags.DEFINE_enum("discriminator", discriminator, sorted(discriminators), "Discriminator (registry name).")
  flags.DEFINE_list(
    "g_widths", [], f"Generator widths {g_help and f'(empty: the model default; {g_help})' or widths_help}."
  )
  flags.DEFINE_list(
    "d_widths", [], f"Discriminator widths {d_help and f'(empty: the model default; {d_help})' or widths_help}."
  )


def optimizer(lr: float = 2e-4, b1: float = 0.5, b2: float = 0.999, schedule: str = "constant",
              decay_start: float = 0.0, clipping: bool = True) -> None:  # fmt: skip
  flags.DEFINE_enum("optimizer", "adam", list(optimizers.OPTIMIZERS), "Optimiser of every network.")
  flags.DEFINE_float(
    "lr", lr, "Learning rate of the generator (and of the discriminator unless --d_lr).", lower_bound=0
  )
  flags.DEFINE_float("d_lr", None, "Discriminator learning rate (default: --lr).", lower_bound=0.0)
  flags.DEFINE_float("b1", b1, "Adam beta1.")
  flags.DEFINE_float("b2", b2, "Adam beta2.")
  flags.DEFINE_enum(
    "lr_schedule",
    schedule,
    list(optimizers.SCHEDULES),
    "constant, or constant for --decay_start of each network's updates, then linearly (linear_decay) or by a cosine "
    "to 0.",
  )
  flags.DEFINE_float(
    "decay_start", decay_start, "Fraction of the run before the decay starts.", lower_bound=0.0, upper_bound=1.0
  )
  if clipping:
    flags.DEFINE_float("clip_value", 0.0, "Critic weight clipping to [-c, c] (WGAN; 0: none).", lower_bound=0.0)


def adversarial(loss: str = "non_saturating", n_critic: int = 1, steps: bool = True, penalties: bool = True,
                label: bool = True, images: bool = True, classes: bool = False,
                stateful: bool = True) -> None:  # fmt: skip
  """--loss (and --real_label, the penalties' weights, --n_critic, --n_gen where the family has them; bCR on
  images, the AC-GAN weight for class-conditional families; LeCam where the family keeps penalty states)."""
  flags.DEFINE_enum("loss", loss, sorted(losses.LOSSES), "Adversarial loss (jaxgan.losses.register_loss adds more).")
  if label:
    flags.DEFINE_float(
      "real_label", 1.0, "Target of real samples; 0.9 is one-sided label smoothing.", lower_bound=0.0, upper_bound=1.0
    )
  if penalties:
    flags.DEFINE_float("gp_weight", 0.0, "WGAN-GP penalty lambda (0: off).", lower_bound=0.0)
    flags.DEFINE_float("r1_weight", 0.0, "R1 penalty gamma (0: off).", lower_bound=0.0)
    flags.DEFINE_integer(
      "r1_every", 1, "Lazy R1: computed every this many D updates, weighted by it (StyleGAN2: 16).", lower_bound=1
    )
    flags.DEFINE_float(
      "dragan_weight", 0.0, "DRAGAN penalty lambda (Kodali et al., 2017; 10 in the paper; 0: off).", lower_bound=0.0
    )
    if stateful:
      flags.DEFINE_float(
        "lecam_weight", 0.0, "LeCam regularisation lambda (Tseng et al., 2021; 0: off).", lower_bound=0.0
      )
      flags.DEFINE_float("lecam_decay", 0.99, "Decay of LeCam's EMA anchors.", lower_bound=0.0, upper_bound=0.999999)
    if images:
      flags.DEFINE_float(
        "bcr_weight",
        0.0,
        "Balanced consistency regularisation lambda_real = lambda_fake (Zhao et al., 2021; 10 in the paper; 0: off).",
        lower_bound=0.0,
      )
  if classes:
    flags.DEFINE_float(
      "ac_weight", 1.0, "--loss=acgan: weight of the auxiliary classifier's cross-entropy.", lower_bound=0.0
    )
  if steps:
    flags.DEFINE_integer(
      "n_critic", n_critic, "D updates per iteration (k of Goodfellow et al.'s Algorithm 1).", lower_bound=1
    )
    flags.DEFINE_integer("n_gen", 1, "G updates per iteration.", lower_bound=1)


def discriminator_options(images: bool = True) -> None:
  """--spectral_norm (any family's discriminators) and --diffaugment (image families)."""
  flags.DEFINE_bool(
    "spectral_norm",
    False,
    "Spectrally normalise every weight of the discriminator(s) (Miyato et al., 2018; power-iteration vectors in "
    "the checkpoint).",
  )
  if images:
    flags.DEFINE_list(
      "diffaugment",
      [],
      f"DiffAugment policy (Zhao et al., 2020), any of {','.join(DIFFAUGMENT_OPS)} (e.g. color,translation,cutout), "
      "applied to real and generated images in both updates (empty: off).",
    )


def latent(latent_dim: int = 100, packing: bool = True) -> None:
  flags.DEFINE_integer("latent_dim", latent_dim, "Size of z.", lower_bound=1)
  flags.DEFINE_enum("latent_dist", "normal", list(gan.LATENT_DISTRIBUTIONS), "z ~ N(0, I) or U(-1, 1)^d.")
  flags.DEFINE_float(
    "ema_decay",
    0.0,
    "Generator EMA decay (0: off); figures and evaluation use the EMA.",
    lower_bound=0.0,
    upper_bound=0.999999,
  )
  if packing:
    flags.DEFINE_integer("pack", 1, "PacGAN packing degree: D judges this many samples jointly.", lower_bound=1)


def evaluation(eval_samples: int = 1000, grid_size: int | None = 10, classifier: bool = True, periodic: bool = True,
               what: str = "samples", grid_help: str = "Rows and columns of the sample grid.",
               min_samples: int = 1) -> None:  # fmt: skip
  """--eval_samples (and --grid_size, --eval_every, --best_metric, --classifier_workdir where the script has them)."""
  flags.DEFINE_integer("eval_samples", eval_samples, f"Number of {what} of the evaluation.", lower_bound=min_samples)
  if grid_size is not None:
    flags.DEFINE_integer("grid_size", grid_size, grid_help, lower_bound=1)
  if periodic:
    flags.DEFINE_integer(
      "eval_every",
      0,
      "Iterations between evaluations of the sampling generator (0: off); each appends one line to eval.jsonl "
      "(jaxgan.evaluation.training_eval).",
      lower_bound=0,
    )
    flags.DEFINE_string(
      "best_metric",
      None,
      "With --eval_every: keep the checkpoint where this evaluation number is best in checkpoints_best/ (lower is "
      "better for fcd, kid, pixel_frechet_distance, pixel_kid; higher for precision, recall, density, coverage, "
      "label_accuracy); experiments/evaluate.py --step=best evaluates it.",
    )
  if classifier:
    flags.DEFINE_string(
      "classifier_workdir",
      None,
      "Classifier of experiments/train_classifier.py trained on the data: FCD, KID and precision/recall in its "
      "feature space and label accuracy (without it they are computed on pixels, or skipped with a note).",
    )


def translation(flip_help: str) -> None:
  """What Pix2Pix and CycleGAN share: mode, direction, PatchGAN, jitter, strips and translation folders."""
  flags.DEFINE_enum("mode", "train", ["train", "translate"], "train, or translate --input_dir with the checkpoint.")
  flags.DEFINE_enum(
    "direction",
    "AtoB",
    list(cyclegan.DIRECTIONS),
    "Pix2Pix: AtoB learns A -> B (A is the left half of A|B images), BtoA the reverse; CycleGAN --mode=translate: "
    "G (AtoB) or F (BtoA).",
  )
  flags.DEFINE_enum("patch_size", "70", [str(p) for p in sorted(PATCH_SIZES)], "PatchGAN receptive field N.")
  flags.DEFINE_bool("jitter", True, "Random jitter: resize to --jitter_size and crop back, in the jitted step.")
  flags.DEFINE_integer("jitter_size", 0, "Jitter resize side (0: 286/256 of --image_size).", lower_bound=0)
  flags.DEFINE_enum(
    "jitter_method",
    "bilinear",
    list(JITTER_METHODS),
    "Jitter resize interpolation (nearest keeps binary images crisp).",
  )
  flags.DEFINE_bool("flip", True, flip_help)
  flags.DEFINE_integer("strip_scale", 1, "Pixel repeat of the sample strips.", lower_bound=1)
  flags.DEFINE_integer("eval_batch", 64, "Batch size of evaluation and translation.", lower_bound=1)
  flags.DEFINE_string("input_dir", None, "translate: folder of input images.")
  flags.DEFINE_string("output_dir", None, "translate: where outputs go (files are never overwritten).")
